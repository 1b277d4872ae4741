"""Command line: convert fb.resnet.torch's ``resnet-200.t7`` into a Keras weights file.

    python -m keras_preresnet.convert resnet-200.t7 preact_resnet200.weights.h5 [--architecture=NAME] [--use_bias]
"""

import os
import sys

from absl import flags

from keras_preresnet import cli, files, models
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


PROG = "convert"
FLAGS = cli.new_flags()
flags.DEFINE_enum("architecture", weights.DEFAULT_ARCHITECTURE, sorted(models.ARCHITECTURES),
                  "the Keras architecture to convert into", flag_values=FLAGS)
flags.DEFINE_bool("use_bias", False, "build the model with conv biases (needed only for non-zero biases without BN)",
                  flag_values=FLAGS)
flags.DEFINE_alias("use-bias", "use_bias", flag_values=FLAGS)


def _convert(arguments):
    if len(arguments) != 2:
        raise cli.usage_error("Give the Torch7 checkpoint (e.g. resnet-200.t7) and the Keras weights file to write "
                              f"(ending in .weights.h5); received {len(arguments)} arguments.")
    t7, output = arguments
    convert_file(t7, output, FLAGS.architecture, use_bias=FLAGS.use_bias)
    print(f"wrote {output} (SHA-256 {weights.file_sha256(output)})")
    return cli.EXIT_OK


main = cli.main_of(PROG, FLAGS, __doc__, _convert)


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
