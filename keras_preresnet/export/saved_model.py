"""SavedModel for TF Serving: encoded images in, probabilities and top-5 classes with labels out.

Signatures (``saved_model_cli show --all`` lists them):

* ``serving_default``: ``images`` — ``tf.string [batch]`` of encoded JPEG or PNG images of any size.
  Each is decoded and preprocessed in the graph (``Servable.preprocess``). A request holding bytes that
  are not a whole JPEG, PNG, GIF or BMP (another format, cut short) fails with an error naming the first
  such index (``images[3] ...``); bytes that look whole but are corrupt inside fail it with the decoder's
  error. An empty request gets empty outputs.
* ``preprocessed``: ``inputs`` — ``float32 [batch, size, size, 3]``, already preprocessed.

Both return ``probabilities`` ``float32 [batch, classes]``, ``classes`` ``int32 [batch, k]`` (the top-k
class ids, best first, k = min(5, classes)) and ``labels`` ``string [batch, k]``.

In the serving SavedModel both signatures call one function, ``network``: the model traced once with
its weights frozen into constants of that function's graph (``saved_model.pb``; ``variables/`` holds
none). Reading every weight from a variable costs TensorFlow an op per weight and per call, and keeps
grappler from folding what only depends on weights (a BatchNorm's ``gamma / sqrt(var + eps)``, a
bias's reshape): about 1,000 of the folded PreActResNet164's 2,255 ops. Frozen, a batch-1 call takes
about 30% less CPU (docs/export.md, "Speed"). Each weight is stored once: both signatures call the same
function.

The float-only SavedModels (the TFLite and ONNX converters' input, and format ``saved_model_float``) are
``tf.Module`` s that track the model's TensorFlow variables (``v.value``) and whose functions close over
the Keras model. Tracking the variables is what keeps a converted TFLite model from being all NaN
(docs/export.md); not tracking the Keras model itself is what stores each weight once:
``keras.export.ExportArchive`` (and a module holding the model as an attribute) writes every variable
twice, once per Python wrapper, doubling the files and the memory of the server that restores them.
"""

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

import keras_preresnet.export.images as images
import keras_preresnet.export.parity as parity
from keras_preresnet.runtimes import FLOAT_INPUT, PREPROCESSED_SIGNATURE

SERVING_SIGNATURE = "serving_default"
IMAGES_INPUT = "images"
TOP_K = 5
# The float-only SavedModel that the TFLite and ONNX converters start from.
PROBABILITIES_SIGNATURE = "probabilities"


def _module(model, **functions):
    """A tf.Module holding ``functions`` (tf.functions over the model) and, where ``model`` is given, the
    model's variables once."""
    module = tf.Module()
    if model is not None:
        module.model_variables = [variable.value for variable in model.variables]
    for name, function in functions.items():
        # Traced now, before the SavedModel is written: AutoGraph writes the code it generates to
        # TMPDIR, and a save that fails for want of space must fail writing, not tracing.
        function.get_concrete_function()
        setattr(module, name, function)
    return module


def _float_spec(servable):
    size = servable.image_size
    return tf.TensorSpec([None, size, size, 3], tf.float32, name=FLOAT_INPUT)


def frozen_network(servable):
    """``servable``'s network as a tf.function of float inputs to float32 probabilities whose weights are
    constants of its graph."""
    model = servable.model
    spec = _float_spec(servable)
    traced = tf.function(lambda inputs: tf.cast(model(inputs, training=False), tf.float32),
                         input_signature=[spec]).get_concrete_function()
    frozen = convert_to_constants.convert_variables_to_constants_v2(traced)
    graph_def = frozen.graph.as_graph_def()
    (input_name,), (output_name,) = [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]
    output_shape = frozen.outputs[0].shape

    def network(inputs):
        (probabilities,) = tf.graph_util.import_graph_def(
            graph_def, input_map={input_name: inputs}, return_elements=[output_name], name="network")
        probabilities.set_shape(output_shape)
        return probabilities

    return tf.function(network, input_signature=[spec])


def serving_module(servable):
    """The TF Serving module of ``servable`` and its signatures ``{name: tf.function}``."""
    labels = tf.constant(servable.labels, tf.string)
    k = min(TOP_K, len(servable.labels))
    size = servable.image_size
    network = frozen_network(servable)

    def classify(inputs):
        probabilities = network(inputs)
        top = tf.math.top_k(probabilities, k=k)
        return {"probabilities": probabilities, "classes": top.indices, "labels": tf.gather(labels, top.indices)}

    def decode_and_preprocess(encoded):
        complete = images.looks_complete(encoded)
        image = tf.cond(
            complete,
            lambda: servable.preprocess(tf.io.decode_image(encoded, channels=3, expand_animations=False)),
            lambda: tf.zeros([size, size, 3], tf.float32))
        return image, complete

    def serve_images(images_):
        # A graph cannot catch the error of one decode, and that error would not say which image it was:
        # each image is first checked in the graph (images.looks_complete), and the first that fails is
        # named. (A tf.data pipeline that drops what fails to decode names every bad image, but costs
        # 10-50 ms a request to build: more than the network at batch 1.)
        count = tf.shape(images_, out_type=tf.int32)[0]
        inputs, complete = tf.map_fn(
            decode_and_preprocess, images_,
            fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32), tf.TensorSpec([], tf.bool)))
        first_bad = tf.reduce_min(tf.concat([tf.where(tf.logical_not(complete))[:1, 0], [tf.cast(count, tf.int64)]], 0))
        message = tf.strings.format(
            IMAGES_INPUT + "[{}] of the request is not a decodable JPEG, PNG, GIF or BMP image.", first_bad)
        with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(complete), [message])]):
            # The network cannot run on a batch of none (BatchNorm fails); an empty request gets
            # empty outputs of the same signature.
            return tf.cond(count > 0, lambda: classify(inputs), empty_outputs)

    def empty_outputs():
        return {"probabilities": tf.zeros([0, len(servable.labels)], tf.float32),
                "classes": tf.zeros([0, k], tf.int32), "labels": tf.zeros([0, k], tf.string)}

    signatures = {
        SERVING_SIGNATURE: tf.function(
            serve_images, input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES_INPUT)]
        ),
        PREPROCESSED_SIGNATURE: tf.function(classify, input_signature=[_float_spec(servable)]),
    }
    return _module(None, network=network, **signatures), signatures


def save(module, signatures, path):
    """Writes ``module`` (of ``serving_module`` or ``probabilities_module``) as a SavedModel to ``path``."""
    # The save wraps each signature in a function of its own and traces it with AutoGraph, which writes
    # code to TMPDIR: on a full disk AutoGraph warns at length and traces the straight-line wrapper as it
    # is. What matters is whether the save itself fails, which it reports by its error.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        tf.saved_model.save(module, path, signatures=signatures)
    finally:
        logger.setLevel(level)
    return path


def write(servable, path):
    """Writes the serving SavedModel of ``servable`` to the folder ``path``."""
    return save(*serving_module(servable), path)


def write_probabilities_only(servable, path, signature=PROBABILITIES_SIGNATURE):
    """A SavedModel with one float-in, probabilities-out ``signature``.

    With the default name it is the TFLite and ONNX converters' input; with ``SERVING_SIGNATURE`` it is
    the float-only SavedModel (format ``saved_model_float``) for tools that cannot read a string input
    (OpenVINO's and TF-TRT's converters take the default signature and need every input a tensor of
    numbers).
    """
    return save(*probabilities_module(servable, signature), path)


def probabilities_module(servable, signature=PROBABILITIES_SIGNATURE):
    """The module of ``write_probabilities_only`` and its signatures ``{name: tf.function}``."""
    model = servable.model

    def probabilities(inputs):
        return {"probabilities": tf.cast(model(inputs, training=False), tf.float32)}

    signatures = {signature: tf.function(probabilities, input_signature=[_float_spec(servable)])}
    return _module(model, **signatures), signatures


def verify_float_only(path, reference, preprocessed, batch_size=16):
    """Parity of the float-only SavedModel's ``serving_default`` with the Keras ``reference``."""
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures[SERVING_SIGNATURE]
    outputs = [serve(**{FLOAT_INPUT: tf.constant(preprocessed[start : start + batch_size])})["probabilities"].numpy()
               for start in range(0, len(preprocessed), batch_size)]
    return parity.compare("saved_model_float", path, reference, np.concatenate(outputs), parity.FLOAT_TOLERANCE,
                          file=".")


def verify(path, reference, image_files, preprocessed, batch_size=16):
    """Parity of both signatures of the SavedModel at ``path`` with the Keras ``reference`` probabilities.

    ``serving_default`` gets the image files' bytes (so decoding and preprocessing in the graph are
    checked too); ``preprocessed`` gets ``preprocessed``, the same images prepared outside the graph.
    """
    loaded = tf.saved_model.load(path)
    encoded = images.read_encoded(image_files)
    serve = loaded.signatures[SERVING_SIGNATURE]
    floats = loaded.signatures[PREPROCESSED_SIGNATURE]
    from_bytes, from_floats = [], []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        from_bytes.append(serve(**{IMAGES_INPUT: tf.constant(batch)})["probabilities"].numpy())
        x = preprocessed[start : start + batch_size]
        from_floats.append(floats(**{FLOAT_INPUT: tf.constant(x)})["probabilities"].numpy())
    return [
        parity.compare(
            f"saved_model/{SERVING_SIGNATURE}", path, reference, np.concatenate(from_bytes),
            parity.FLOAT_TOLERANCE, file=".",
        ),
        parity.compare(
            f"saved_model/{PREPROCESSED_SIGNATURE}", path, reference, np.concatenate(from_floats),
            parity.FLOAT_TOLERANCE, file=".",
        ),
    ]
