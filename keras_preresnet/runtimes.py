"""Runners of exported classifiers (SavedModel, TFLite, ONNX) and the record that travels with them.

Every exported artifact takes preprocessed float images ``[batch, size, size, 3]`` and returns class
probabilities. ``serving.json`` beside it (``assets.extra/`` in a SavedModel) says how to get there:
the class labels in output order, the preprocessing name (``keras_preresnet.preprocessing.PREPROCESSING``)
and the input size. The exporters write it; ``python -m keras_preresnet.predict`` reads it.
"""

import json
import os

import numpy as np

from keras_preresnet import files

RECORD_FILENAME = "serving.json"
SAVED_MODEL_RECORD = os.path.join("assets.extra", RECORD_FILENAME)
# The SavedModel signature that takes preprocessed floats, and its input name.
PREPROCESSED_SIGNATURE = "preprocessed"
FLOAT_INPUT = "inputs"


def write_record(path, labels, preprocessing, image_size, name=None):
    """Writes the serving record (JSON) to ``path`` through a temporary file."""
    record = dict(name=name, labels=list(labels), preprocessing=preprocessing, image_size=int(image_size))
    files.write_bytes(path, json.dumps(record, indent=2) + "\n")
    return path


def read_json_record(path, required, advice):
    """The JSON object at ``path`` with the ``required`` keys; errors end with ``advice``."""
    with open(path, encoding="utf-8") as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path!r} is not valid JSON ({error}). {advice}") from error
    missing = [key for key in required if key not in record]
    if missing:
        raise ValueError(f"{path!r} lacks {missing}. {advice}")
    return record


def read_record(path):
    """The serving record at ``path``; a clear error where it is missing or incomplete."""
    advice = "Export the model again with `python -m keras_preresnet.export` (which writes it)."
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path!r} not found: it holds the labels and preprocessing of an exported model. {advice}"
        )
    return read_json_record(path, ("labels", "preprocessing", "image_size"), advice)


def require_extra(module, purpose):
    """Imports ``module`` of the ``export`` extra, or says how to install it."""
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs {module!r}; install the extra: pip install 'keras_preresnet[export]'."
        ) from error


class LiteRTModel:
    """Runs a TFLite classifier with ``ai_edge_litert``: float batches in, float probabilities out.

    A full-integer model's int8 input and output are (de)quantised with the scale and zero point it
    stores."""

    def __init__(self, path, num_threads=None):
        require_extra("ai_edge_litert", "Running TFLite models")
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


class OnnxModel:
    """Runs an exported ONNX classifier (NHWC input) with onnxruntime on the CPU."""

    def __init__(self, path, num_threads=None):
        ort = require_extra("onnxruntime", "Running ONNX models")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def predict(self, inputs):
        return self.session.run(None, {self._input: np.asarray(inputs, np.float32)})[0]


class SavedModelClassifier:
    """Runs the ``preprocessed`` signature of an exported SavedModel."""

    def __init__(self, path):
        import tensorflow as tf

        self._tf = tf
        loaded = tf.saved_model.load(str(path))
        # The float-only SavedModel (format saved_model_float) serves floats as its default signature.
        name = PREPROCESSED_SIGNATURE if PREPROCESSED_SIGNATURE in loaded.signatures else "serving_default"
        signature = loaded.signatures.get(name)
        if signature is None or FLOAT_INPUT not in signature.structured_input_signature[1]:
            raise ValueError(
                f"The SavedModel {path!r} has no {PREPROCESSED_SIGNATURE!r} signature (it has "
                f"{sorted(loaded.signatures)}); export it with `python -m keras_preresnet.export`."
            )
        self._loaded = loaded  # keeps the variables alive
        self._signature = signature

    def predict(self, inputs):
        inputs = self._tf.constant(np.asarray(inputs, np.float32))
        return self._signature(**{FLOAT_INPUT: inputs})["probabilities"].numpy()
