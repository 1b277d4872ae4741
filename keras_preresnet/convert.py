"""Command line: convert fb.resnet.torch's ``resnet-200.t7`` into a Keras weights file.

    python -m keras_preresnet.convert resnet-200.t7 preact_resnet200.weights.h5
"""

import argparse
import os
import sys

from keras_preresnet import console, files, models
from keras_preresnet.pretrained import converter, weights


def convert_file(t7_path, output_path, architecture=weights.DEFAULT_ARCHITECTURE, **build_kwargs):
    """Converts a ``.t7`` checkpoint into a Keras weights file for ``architecture``.

    The file is written only if the whole checkpoint converted; ``build_kwargs`` go to the builder
    (e.g. ``use_bias=True``).
    """
    output_path = os.fspath(output_path)
    if not output_path.endswith(".weights.h5"):
        raise ValueError(f"The output must be a Keras weights file ending in '.weights.h5'; received {output_path!r}.")
    model = models.build_named(architecture, weights=None, **build_kwargs)
    converter.convert(t7_path, model)
    return files.save_weights(model, output_path)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_preresnet.convert",
        description="Convert fb.resnet.torch's resnet-200.t7 (Torch7) into a Keras weights file.",
    )
    parser.add_argument("t7", help="the Torch7 checkpoint, e.g. resnet-200.t7")
    parser.add_argument("output", help="the Keras weights file to write, ending in .weights.h5")
    parser.add_argument("--architecture", default=weights.DEFAULT_ARCHITECTURE, choices=sorted(models.ARCHITECTURES),
                        help="the Keras architecture to convert into (default: %(default)s)")
    parser.add_argument("--use-bias", action="store_true",
                        help="build the model with conv biases (needed only for non-zero biases without BN)")
    console.add_verbosity_argument(parser)
    args = parser.parse_args(argv)
    try:
        convert_file(args.t7, args.output, args.architecture, use_bias=args.use_bias)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (SHA-256 {weights.file_sha256(args.output)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
