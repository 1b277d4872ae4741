"""Command line: draw the ResNet paper's Fig. 7 (layer responses) for several models.

    python -m keras_preresnet.plot_layer_responses --cifar_dir=DATA --output=fig7.png \\
        --model=plain20=runs/p20/best.weights.h5 --model=resnet20=runs/r20/best.weights.h5

See ``keras_preresnet.analysis.layer_responses`` for what is measured.
"""

import json
import os
import sys

import numpy as np
from absl import flags

from keras_preresnet import cli, datasets, files, models, preprocessing
from keras_preresnet.analysis.layer_responses import layer_responses, plot_layer_responses, ranked


def _short(path):
    """The last folder and file name of ``path``, which tell runs apart in a legend."""
    return os.path.join(os.path.basename(os.path.dirname(os.path.abspath(path))), os.path.basename(path)) \
        if path != "imagenet" else path


def _images_for(layout, cifar_dir, count):
    """CIFAR-10 test images prepared as the layout's training set was (CIFAR-10's or ImageNet's)."""
    raw, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    return preprocessing.preprocess(raw[:count], preprocessing.default_preprocessing(layout))


PROG = "plot_layer_responses"
FLAGS = cli.new_flags()
flags.DEFINE_multi_string("model", None, "NAME[=WEIGHTS]: an architecture (e.g. resnet20, PlainNet56, preact_resnet200) "
                          "and optionally its weights ('imagenet' or a weights file, e.g. a run's best.weights.h5); "
                          "repeat for each model to draw", flag_values=FLAGS)
flags.DEFINE_string("cifar_dir", None, "folder holding cifar-10-batches-py; its test images are the inputs "
                    "(default: $KERAS_PRERESNET_CIFAR_DIR)", flag_values=FLAGS)
flags.DEFINE_integer("images", 500, "test images to use", flag_values=FLAGS)
flags.DEFINE_integer("classes", None, "classes of the weights' head if not the layout's", flag_values=FLAGS)
flags.DEFINE_string("output", None, "the PNG file to write", flag_values=FLAGS)
flags.DEFINE_string("json", None, "also write the standard deviations to this JSON file", flag_values=FLAGS)


def _plot(arguments):
    cli.check_arguments([PROG, *arguments], FLAGS, ("model", "output"))
    cifar_dir = FLAGS.cifar_dir or os.environ.get(datasets.CIFAR_DIR_ENV)
    if not cifar_dir:
        raise cli.usage_error(f"--cifar_dir is required (or set ${datasets.CIFAR_DIR_ENV}).")
    if FLAGS.images < 1:
        raise cli.usage_error(f"--images must be a positive integer; received {FLAGS.images}.")
    results = {}
    for spec in FLAGS.model:
        name, _, weights = spec.partition("=")
        key = models.resolve_architecture(name)
        layout = models.ARCHITECTURES[key]["layout"]
        model = models.build_named(key, weights=weights or None, classes=FLAGS.classes)
        label = models.public_name(key) + (f" ({_short(weights)})" if weights else " (untrained)")
        results[label] = layer_responses(model, _images_for(layout, cifar_dir, FLAGS.images))
        print(f"{label}: {len(results[label])} 3x3 layers, mean std {np.mean(ranked(results[label])):.3f}",
              flush=True)
    plot_layer_responses(results, FLAGS.output)
    if FLAGS.json:
        files.write_bytes(FLAGS.json, json.dumps(results, indent=2) + "\n")
    print(f"wrote {FLAGS.output}")
    return cli.EXIT_OK


main = cli.main_of(PROG, FLAGS, __doc__, _plot)


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
