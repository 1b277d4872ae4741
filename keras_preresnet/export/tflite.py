"""TFLite models (float32, float16, dynamic-range, full-integer int8) run with ``ai_edge_litert``.

Every variant takes the preprocessed float input ``[batch, size, size, 3]`` (batch resizable) and
returns class probabilities, except ``int8``, which is integer end to end: its input and output are
int8 tensors with the scale and zero point stored in the model (``keras_preresnet.runtimes.LiteRTModel``,
which runs them, applies them).
Conversion starts from the probabilities-only SavedModel of ``export.saved_model``, whose module tracks
the model's variables (without that, TFLite outputs are all NaN, docs/export.md).
"""

import numpy as np
import tensorflow as tf

import keras_preresnet.export.parity as parity
from keras_preresnet.runtimes import LiteRTModel

VARIANTS = ("float32", "float16", "dynamic", "int8")
QUANTIZED = ("float16", "dynamic", "int8")


def filename(variant):
    return f"{variant}.tflite"


def convert(saved_model_dir, variant, representative_inputs=None, signature="probabilities"):
    """Converts the float SavedModel to a TFLite flatbuffer (bytes).

    Args:
        saved_model_dir: a SavedModel with a float-in, probabilities-out ``signature``.
        variant: one of ``VARIANTS``.
        representative_inputs: preprocessed calibration images ``[N, size, size, 3]``; required by int8.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown TFLite variant {variant!r}; choose from {VARIANTS}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if representative_inputs is None or len(representative_inputs) == 0:
            raise ValueError("Full-integer int8 conversion needs calibration images (--calibration_data DIR).")
        calibration = np.asarray(representative_inputs, np.float32)

        def representative_dataset():
            for image in calibration:
                yield [image[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def verify(path, variant, reference, preprocessed):
    """Parity of the TFLite model at ``path`` with the Keras ``reference`` on ``preprocessed`` images."""
    outputs = LiteRTModel(path).predict(preprocessed)
    tolerance = None if variant in QUANTIZED else parity.FLOAT_TOLERANCE
    return parity.compare(f"tflite/{variant}", path, reference, outputs, tolerance)
