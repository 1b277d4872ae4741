"""Command line: ``python -m keras_preresnet.export --model=PreActResNet200 --weights=imagenet --out=models ...``.

Builds the named model with its weights, exports the requested formats and prints the parity report of
every artifact against the Keras model. Exit status 1 with a one-line error for bad input, 2 for a usage error.
"""

import keras_preresnet  # noqa: F401 (first: loads TensorFlow without its start-up lines)
from absl import flags, logging

from keras_preresnet import cli, export, files
from keras_preresnet.export import parity

flags.DEFINE_string("model", None, "Model name, e.g. PreActResNet200 or preact_resnet200, or a training run's "
                    "model_dir (brings its weights, class names and preprocessing).", required=True)
flags.DEFINE_string("weights", None, "'imagenet', a Keras weights file, or empty for random weights.")
flags.DEFINE_string("classes", None, "Number of classes, or a text file with one class label per line.")
flags.DEFINE_list("formats", ["saved_model"], "Formats to export: saved_model, tflite, onnx, saved_model_float "
                  "(float input only, for converters such as OpenVINO and TF-TRT).")
flags.DEFINE_string("out", None, "Output folder; artifacts go to OUT/<name>[-tflite|-onnx]/<version>/.", required=True)
flags.DEFINE_integer("version", None, "Version number; default: one more than the highest under --out.")
flags.DEFINE_list("quantize", [], "Extra TFLite variants: float16, dynamic, int8.")
flags.DEFINE_string("calibration_data", None, "Folder of JPEG/PNG images for int8 calibration.")
flags.DEFINE_string("parity_data", None, "Folder of JPEG/PNG images for the parity report (default: --calibration_data).")
flags.DEFINE_integer("parity_images", 32, "Number of parity images used.", lower_bound=1)
flags.DEFINE_integer("calibration_images", 100, "Number of calibration images used.", lower_bound=1)
flags.DEFINE_string("preprocessing", None, "imagenet, cifar10 or cifar100; default from the model's layout.")
flags.DEFINE_string("name", None, "Serving name (folder and TF Serving model name); default the model name.")
flags.DEFINE_bool("fold_batchnorm", False, "Fold BatchNorm into adjacent convolutions before exporting.")

FLAGS = flags.FLAGS


def main(argv):
    cli.check_arguments(argv, FLAGS)
    # TensorFlow's and the converters' INFO logs would bury the parity report (unless asked for).
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    files.name_output_option("--out")

    servable = export.build(
        FLAGS.model, weights=FLAGS.weights or None, labels=FLAGS.classes,
        preprocessing_name=FLAGS.preprocessing, name=FLAGS.name,
    )
    export.export_model(
        servable, FLAGS.out, formats=FLAGS.formats, quantize=FLAGS.quantize, version=FLAGS.version,
        parity_data=FLAGS.parity_data, calibration_data=FLAGS.calibration_data,
        parity_images=FLAGS.parity_images, calibration_images=FLAGS.calibration_images,
        fold_batchnorm=FLAGS.fold_batchnorm,
    )
    return cli.EXIT_OK


def run():
    # ImportError: a format whose converter is not installed; ParityError: an artifact that does not
    # reproduce the Keras model.
    cli.run("export", main, failures=(ImportError, parity.ParityError))


if __name__ == "__main__":
    run()
