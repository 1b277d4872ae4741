"""ONNX (optional extra ``export``): tf2onnx on the probabilities-only SavedModel, run with onnxruntime.

The ONNX graph keeps TensorFlow's NHWC layout: input ``inputs`` float32 ``[batch, size, size, 3]``
(preprocessed), output ``probabilities`` float32 ``[batch, classes]``.
"""

import numpy as np

from export import parity

FILENAME = "model.onnx"
OPSET = 17


def _require(module):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs {module!r}; install the extra: pip install 'keras_preresnet[export]'."
        ) from error


def convert(saved_model_dir, path, signature="probabilities", opset=OPSET):
    """Converts the float SavedModel's ``signature`` to an ONNX file at ``path``."""
    _require("onnx")
    _require("tf2onnx")
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    graph_def, inputs, outputs, tensors_to_rename = tf_loader.from_saved_model(
        saved_model_dir, None, None, tag="serve", signatures=[signature], return_tensors_to_rename=True
    )
    tf2onnx_convert.from_graph_def(
        graph_def,
        input_names=inputs,
        output_names=outputs,
        opset=opset,
        tensors_to_rename=tensors_to_rename,
        output_path=str(path),
    )
    return path


class OnnxModel:
    """Runs the exported ONNX classifier with onnxruntime on the CPU."""

    def __init__(self, path, num_threads=None):
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def predict(self, inputs):
        return self.session.run(None, {self._input: np.asarray(inputs, np.float32)})[0]


def verify(path, reference, preprocessed):
    outputs = OnnxModel(path).predict(preprocessed)
    return parity.compare("onnx", path, reference, outputs, parity.FLOAT_TOLERANCE)
