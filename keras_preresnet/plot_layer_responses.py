"""Command line: draw the ResNet paper's Fig. 7 (layer responses) for several models.

    python -m keras_preresnet.plot_layer_responses --cifar_dir=DATA --output=fig7.png \\
        --model=plain20=runs/p20/best.weights.h5 --model=resnet20=runs/r20/best.weights.h5

See ``keras_preresnet.analysis.layer_responses`` for what is measured.
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_preresnet import files
from keras_preresnet.analysis.layer_responses import layer_responses, plot_layer_responses, ranked


def _short(path):
    """The last folder and file name of ``path``, which tell runs apart in a legend."""
    return os.path.join(os.path.basename(os.path.dirname(os.path.abspath(path))), os.path.basename(path)) \
        if path != "imagenet" else path


def _images_for(layout, cifar_dir, count):
    from keras_preresnet import datasets, preprocessing

    raw, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    raw = raw[:count]
    if layout == "cifar":
        cifar10 = datasets.DATASETS["cifar10"]
        return ((raw.astype("float32") - np.array(cifar10.mean)) / np.array(cifar10.std)).astype("float32")
    return preprocessing.preprocess_input(raw)


def main(argv=None):
    from keras_preresnet import models

    parser = argparse.ArgumentParser(
        prog="python -m keras_preresnet.plot_layer_responses",
        description="Draw the ResNet paper's Fig. 7 (std of each 3x3 layer's response) for several models.",
    )
    parser.add_argument("--model", action="append", required=True, metavar="NAME[=WEIGHTS]",
                        help="an architecture (e.g. resnet20, PlainNet56, preact_resnet200) and optionally its "
                             "weights ('imagenet' or a weights file, e.g. a run's best.weights.h5); repeat "
                             "for each model to draw")
    parser.add_argument("--cifar_dir", default=os.environ.get("KERAS_PRERESNET_CIFAR_DIR"),
                        help="folder holding cifar-10-batches-py; its test images are the inputs "
                             "(default: $KERAS_PRERESNET_CIFAR_DIR)")
    parser.add_argument("--images", type=int, default=500, help="test images to use (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=None, help="classes of the weights' head if not the layout's")
    parser.add_argument("--output", required=True, help="the PNG file to write")
    parser.add_argument("--json", default=None, help="also write the standard deviations to this JSON file")
    args = parser.parse_args(argv)
    if not args.cifar_dir:
        parser.error("--cifar_dir is required (or set KERAS_PRERESNET_CIFAR_DIR).")
    if args.images < 1:
        parser.error(f"--images must be a positive integer; received {args.images}.")
    try:
        results = {}
        for spec in args.model:
            name, _, weights = spec.partition("=")
            key = models.resolve_architecture(name)
            layout = models.ARCHITECTURES[key]["layout"]
            model = models.build_named(key, weights=weights or None, classes=args.classes)
            label = models.public_name(key) + (f" ({_short(weights)})" if weights else " (untrained)")
            results[label] = layer_responses(model, _images_for(layout, args.cifar_dir, args.images))
            print(f"{label}: {len(results[label])} 3x3 layers, mean std {np.mean(ranked(results[label])):.3f}",
                  flush=True)
        plot_layer_responses(results, args.output)
        if args.json:
            files.write_bytes(args.json, json.dumps(results, indent=2) + "\n")
    except (ValueError, OSError) as error:
        print(f"layer_responses: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
