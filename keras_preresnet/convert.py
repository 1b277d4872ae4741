"""Command line: convert fb.resnet.torch's ``resnet-200.t7`` into a Keras weights file.

    python -m keras_preresnet.convert resnet-200.t7 preact_resnet200.weights.h5
"""

import argparse
import sys

from keras_preresnet import console
from keras_preresnet.pretrained.converter import DEFAULT_ARCHITECTURE, convert_file


def main(argv=None):
    from keras_preresnet import models

    parser = argparse.ArgumentParser(
        prog="python -m keras_preresnet.convert",
        description="Convert fb.resnet.torch's resnet-200.t7 (Torch7) into a Keras weights file.",
    )
    parser.add_argument("t7", help="the Torch7 checkpoint, e.g. resnet-200.t7")
    parser.add_argument("output", help="the Keras weights file to write, ending in .weights.h5")
    parser.add_argument("--architecture", default=DEFAULT_ARCHITECTURE, choices=sorted(models.ARCHITECTURES),
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
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
