"""Exporters: SavedModel for TF Serving, TFLite (float and quantised) and ONNX, checked against Keras.

    from keras_preresnet import export
    servable = export.build("PreActResNet200", weights="imagenet")
    result = export.export_model(servable, "models", formats=("saved_model", "tflite", "onnx"),
                                 quantize=("float16", "dynamic", "int8"), calibration_data="images/")

The command line ``python -m keras_preresnet.export`` does the same. Exports need Keras' TensorFlow backend.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras_preresnet  # noqa: E402,F401 (first: the command line loads TensorFlow without its start-up lines)
import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"The exporters need Keras' TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}. "
        "Set KERAS_BACKEND=tensorflow."
    )

from keras_preresnet.export.exporter import FORMATS, ExportResult, export_model  # noqa: E402
from keras_preresnet.export.parity import FLOAT_TOLERANCE, ParityError, ParityReport  # noqa: E402
from keras_preresnet.export.servable import Servable, build, read_labels, resolve_architecture  # noqa: E402
from keras_preresnet.export.tflite import VARIANTS as TFLITE_VARIANTS  # noqa: E402

__all__ = [
    "FLOAT_TOLERANCE",
    "FORMATS",
    "TFLITE_VARIANTS",
    "ExportResult",
    "ParityError",
    "ParityReport",
    "Servable",
    "build",
    "export_model",
    "read_labels",
    "resolve_architecture",
]
