"""ONNX (optional extra ``export``): tf2onnx on the probabilities-only SavedModel, run with onnxruntime.

The ONNX graph keeps TensorFlow's NHWC layout: input ``inputs`` float32 ``[batch, size, size, 3]``
(preprocessed), output ``probabilities`` float32 ``[batch, classes]``.
"""

from keras_preresnet.export import parity
from keras_preresnet.runtimes import OnnxModel, require_extra

FILENAME = "model.onnx"
OPSET = 17


def convert(saved_model_dir, path, signature="probabilities", opset=OPSET):
    """Converts the float SavedModel's ``signature`` to an ONNX file at ``path``."""
    require_extra("onnx", "ONNX export")
    require_extra("tf2onnx", "ONNX export")
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


def verify(path, reference, preprocessed):
    outputs = OnnxModel(path).predict(preprocessed)
    return parity.compare("onnx", path, reference, outputs, parity.FLOAT_TOLERANCE)
