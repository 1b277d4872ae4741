"""export.saved_model: the TF Serving signature contract, checked with TF's loader and saved_model_cli."""

import collections
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import export_testing
import keras_preresnet
from keras_preresnet.export import images, parity, saved_model, servable as servable_lib
from keras_preresnet import preprocessing


@pytest.fixture(scope="module")
def exported(tmp_path_factory, cifar_dir):
    root = tmp_path_factory.mktemp("saved_model")
    servable = export_testing.tiny_servable(cifar_dir)
    files = export_testing.write_cifar_images(cifar_dir, root / "images", count=6)
    path = saved_model.write(servable, str(root / "model"))
    preprocessed = images.preprocessed_batch(servable, files)
    reference = servable.model.predict(preprocessed, verbose=0)
    export_testing.assert_predictions_vary(reference, classes=3)
    return dict(
        servable=servable, path=path, files=files, preprocessed=preprocessed,
        reference=reference, loaded=tf.saved_model.load(path),
    )


def _saved_model_cli(*args):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable)) or "saved_model_cli"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([cli, *args], capture_output=True, text=True, env=env, timeout=300)


def test_signatures_inputs_and_outputs(exported):
    signatures = exported["loaded"].signatures
    assert set(signatures) == {"serving_default", "preprocessed"}
    images_spec = signatures["serving_default"].structured_input_signature[1]
    assert images_spec == {"images": tf.TensorSpec([None], tf.string, name="images")}
    float_spec = signatures["preprocessed"].structured_input_signature[1]
    assert float_spec == {"inputs": tf.TensorSpec([None, 32, 32, 3], tf.float32, name="inputs")}
    for name in signatures:
        outputs = signatures[name].structured_outputs
        assert outputs["probabilities"].dtype == tf.float32 and outputs["probabilities"].shape.as_list() == [None, 10]
        assert outputs["classes"].dtype == tf.int32 and outputs["classes"].shape.as_list() == [None, 5]
        assert outputs["labels"].dtype == tf.string and outputs["labels"].shape.as_list() == [None, 5]


def _float_constants(path):
    """Counter {shape: count} of the float constants (not scalars) in the functions of ``path``'s saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    tensors = [node.attr["value"].tensor for function in proto.meta_graphs[0].graph_def.library.function
               for node in function.node_def if node.op == "Const"]
    return collections.Counter(tuple(d.size for d in t.tensor_shape.dim) for t in tensors
                               if t.dtype == tf.float32.as_datatype_enum and t.tensor_shape.dim)


def test_each_weight_is_stored_once_frozen_into_the_network(exported):
    # The weights are constants of the one network function that both signatures call.
    stored = tf.train.load_checkpoint(os.path.join(exported["path"], "variables", "variables"))
    assert [k for k in stored.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"] == []
    model = exported["servable"].model
    weights = collections.Counter(tuple(variable.shape) for variable in model.variables)
    constants = _float_constants(exported["path"])
    # Leaving out the few-valued constants of the signatures themselves (the preprocessing's mean and std,
    # the empty request's outputs), the constants are the weights, each once.
    big = lambda found: {shape: n for shape, n in found.items() if np.prod(shape) > 3}  # noqa: E731
    assert big(constants) == big(weights) and sum(big(weights).values()) > 10


def test_serving_default_on_jpeg_and_png_bytes_matches_keras(exported):
    encoded = images.read_encoded(exported["files"])
    assert {os.path.splitext(f)[1] for f in exported["files"]} == {".jpg", ".png"}
    out = exported["loaded"].signatures["serving_default"](images=tf.constant(encoded))
    probabilities = out["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, exported["reference"], atol=parity.FLOAT_TOLERANCE)
    expected_top5 = np.argsort(-probabilities, axis=-1, kind="stable")[:, :5]
    np.testing.assert_array_equal(out["classes"].numpy(), expected_top5)
    labels = np.array(exported["servable"].labels, dtype=object)[expected_top5]
    assert out["labels"].numpy().astype(str).tolist() == labels.astype(str).tolist()


def test_preprocessed_signature_matches_keras(exported):
    out = exported["loaded"].signatures["preprocessed"](inputs=tf.constant(exported["preprocessed"]))
    np.testing.assert_allclose(out["probabilities"].numpy(), exported["reference"], atol=parity.FLOAT_TOLERANCE)


def test_images_of_different_sizes_in_one_request(exported, tmp_path, cifar_dir):
    files = export_testing.write_cifar_images(cifar_dir, tmp_path, count=2, sizes=[(48, 40), (32, 32)])
    out = exported["loaded"].signatures["serving_default"](images=tf.constant(images.read_encoded(files)))
    expected = exported["servable"].model.predict(images.preprocessed_batch(exported["servable"], files), verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=parity.FLOAT_TOLERANCE)


def test_undecodable_image_fails_that_request_and_the_next_is_served(exported):
    serve = exported["loaded"].signatures["serving_default"]
    good = images.read_encoded(exported["files"][:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images\[1\] of the request is not a decodable"):
        serve(images=tf.constant(good + [b"these bytes are not an image"]))
    out = serve(images=tf.constant(good))
    np.testing.assert_allclose(out["probabilities"].numpy(), exported["reference"][:1], atol=parity.FLOAT_TOLERANCE)


@pytest.mark.parametrize("bad_at, size", [(0, 1), (2, 4), (3, 4)])
def test_the_error_names_the_first_bad_image(exported, bad_at, size):
    encoded = images.read_encoded(exported["files"][:size])
    encoded[bad_at] = encoded[bad_at][: len(encoded[bad_at]) // 3]  # a truncated JPEG or PNG
    if bad_at + 1 < size:
        encoded[bad_at + 1] = b"not an image either"
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"images\[{bad_at}\] of the request"):
        exported["loaded"].signatures["serving_default"](images=tf.constant(encoded))


def test_empty_request_gets_empty_outputs(exported):
    out = exported["loaded"].signatures["serving_default"](images=tf.constant([], tf.string))
    assert out["probabilities"].shape == (0, 10) and out["probabilities"].dtype == tf.float32
    assert out["classes"].shape == (0, 5) and out["classes"].dtype == tf.int32
    assert out["labels"].shape == (0, 5) and out["labels"].dtype == tf.string


def test_verify_reports_both_signatures_and_catches_a_wrong_model(exported):
    reports = saved_model.verify(exported["path"], exported["reference"], exported["files"], exported["preprocessed"])
    assert [r.artifact for r in reports] == ["saved_model/serving_default", "saved_model/preprocessed"]
    assert all(r.passed and r.top1_agreement == 1.0 for r in reports)
    wrong = np.roll(exported["reference"], 1, axis=-1)
    reports = saved_model.verify(exported["path"], wrong, exported["files"], exported["preprocessed"])
    with pytest.raises(parity.ParityError):
        parity.check(reports)


def test_saved_model_cli_show_all_lists_both_signatures(exported):
    result = _saved_model_cli("show", "--dir", exported["path"], "--all")
    assert result.returncode == 0, result.stderr
    assert "signature_def['serving_default']" in result.stdout
    assert "signature_def['preprocessed']" in result.stdout
    assert "inputs['images']" in result.stdout and "DT_STRING" in result.stdout
    assert "outputs['labels']" in result.stdout and "outputs['classes']" in result.stdout


def test_saved_model_cli_run_serves_encoded_images(exported, tmp_path):
    # Encoded images as a fixed-width bytes array: numpy.load reads it without pickle.
    np.save(tmp_path / "images.npy", np.array(images.read_encoded(exported["files"]), dtype="S"))
    result = _saved_model_cli(
        "run", "--dir", exported["path"], "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    np.testing.assert_allclose(probabilities, exported["reference"], atol=parity.FLOAT_TOLERANCE)
    labels = np.load(tmp_path / "out" / "labels.npy", allow_pickle=True)
    assert labels.shape == (len(exported["files"]), 5)


def test_grpc_predict_request_of_the_docs_fits_the_signature(exported):
    # No TF Serving binary can run here; this builds the docs' gRPC PredictRequest with
    # tensorflow-serving-api and feeds its tensors to the signature the way the server maps them.
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2", reason="tensorflow-serving-api not installed")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images.read_encoded(exported["files"]), dtype=tf.string))
    signature = exported["loaded"].signatures[request.model_spec.signature_name]
    outputs = signature(**{key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["probabilities"]), exported["reference"], atol=parity.FLOAT_TOLERANCE
    )
    assert tf.make_ndarray(response.outputs["labels"]).shape == (len(exported["files"]), 5)


def test_imagenet_model_preprocesses_in_the_graph_like_preprocess_input(tmp_path, cifar_dir):
    model = keras_preresnet.build_resnet(18, layout="imagenet", input_shape=(64, 64, 3), units_per_stage=(1, 1, 1, 1))
    labels = [name for _, name in preprocessing.imagenet_classes()]
    servable = servable_lib.Servable(model, "small", labels, "imagenet")
    files = export_testing.write_cifar_images(cifar_dir, tmp_path / "images", count=2, sizes=[(90, 120), (80, 80)])
    loaded = tf.saved_model.load(saved_model.write(servable, str(tmp_path / "model")))
    out = loaded.signatures["serving_default"](images=tf.constant(images.read_encoded(files)))
    decoded = [images.decode(data).numpy() for data in images.read_encoded(files)]
    expected_inputs = np.stack([preprocessing.preprocess_input(d, image_size=64, resize_size=73) for d in decoded])
    expected = model.predict(expected_inputs, verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=parity.FLOAT_TOLERANCE)
    top1 = out["classes"].numpy()[:, 0]
    assert [label.decode() for label in out["labels"].numpy()[:, 0]] == [labels[i] for i in top1]


def test_a_tf1_session_restores_the_frozen_network_as_tf_serving_does(exported):
    # TF Serving restores a SavedModel into a Session (SavedModelBundle) and runs the signature's tensors.
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING], exported["path"])
        spec = meta.signature_def["preprocessed"]
        probabilities = session.run(spec.outputs["probabilities"].name,
                                    {spec.inputs["inputs"].name: exported["preprocessed"]})
        encoded = meta.signature_def["serving_default"]
        from_bytes = session.run(encoded.outputs["probabilities"].name,
                                 {encoded.inputs["images"].name: images.read_encoded(exported["files"])})
    np.testing.assert_allclose(probabilities, exported["reference"], atol=parity.FLOAT_TOLERANCE)
    np.testing.assert_allclose(from_bytes, exported["reference"], atol=parity.FLOAT_TOLERANCE)
