"""TFLite models (float32, float16, dynamic-range, full-integer int8) run with ``ai_edge_litert``.

Every variant takes the preprocessed float input ``[batch, size, size, 3]`` (batch resizable) and
returns class probabilities, except ``int8``, which is integer end to end: its input and output are
int8 tensors with the scale and zero point stored in the model (``LiteRTModel`` applies them).
Conversion starts from the probabilities-only SavedModel of ``export.saved_model``, whose module tracks
the model's variables (without that, TFLite outputs are all NaN, docs/export.md).
"""

import numpy as np
import tensorflow as tf

from export import parity

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


class LiteRTModel:
    """Runs a TFLite classifier with ``ai_edge_litert``: float batches in, float probabilities out."""

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = None

    def _resize(self, batch):
        if batch != self._batch:
            shape = list(self._input["shape_signature"])
            shape[0] = batch
            self.interpreter.resize_tensor_input(self._input["index"], shape)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def predict(self, inputs):
        """``inputs`` float32 ``[N, size, size, 3]`` -> probabilities float32 ``[N, classes]``."""
        inputs = np.asarray(inputs, np.float32)
        self._resize(len(inputs))
        dtype = self._input["dtype"]
        if dtype != np.float32:
            scale, zero_point = self._input["quantization"]
            info = np.iinfo(dtype)
            inputs = np.clip(np.round(inputs / scale + zero_point), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self._input["index"], inputs)
        self.interpreter.invoke()
        # The output index is looked up again: allocate_tensors may move tensors.
        output = self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"])
        if output.dtype != np.float32:
            scale, zero_point = self._output["quantization"]
            output = (output.astype(np.float32) - zero_point) * scale
        return output


def verify(path, variant, reference, preprocessed):
    """Parity of the TFLite model at ``path`` with the Keras ``reference`` on ``preprocessed`` images."""
    outputs = LiteRTModel(path).predict(preprocessed)
    tolerance = None if variant in QUANTIZED else parity.FLOAT_TOLERANCE
    return parity.compare(f"tflite/{variant}", path, reference, outputs, tolerance)
