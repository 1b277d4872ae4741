"""export.onnx: tf2onnx conversion run with onnxruntime and compared with Keras."""

import numpy as np
import pytest

import export_testing
from keras_preresnet.export import images, onnx, parity, saved_model


@pytest.fixture(scope="module")
def converted(tmp_path_factory, cifar_dir):
    root = tmp_path_factory.mktemp("onnx")
    servable = export_testing.tiny_servable(cifar_dir)
    files = export_testing.write_cifar_images(cifar_dir, root / "images", count=8)
    preprocessed = images.preprocessed_batch(servable, files)
    float_saved_model = saved_model.write_probabilities_only(servable, str(root / "float_saved_model"))
    path = onnx.convert(float_saved_model, root / onnx.FILENAME)
    reference = servable.model.predict(preprocessed, verbose=0)
    export_testing.assert_predictions_vary(reference)
    return dict(path=path, preprocessed=preprocessed, reference=reference)


def test_onnx_matches_keras_within_tolerance(converted):
    report = onnx.verify(converted["path"], converted["reference"], converted["preprocessed"])
    assert report.artifact == "onnx" and report.file == onnx.FILENAME
    assert report.passed and report.max_abs_diff <= parity.FLOAT_TOLERANCE and report.top1_agreement == 1.0


def test_onnx_graph_takes_nhwc_with_dynamic_batch(converted):
    model = onnx.OnnxModel(converted["path"])
    (graph_input,) = model.session.get_inputs()
    assert graph_input.shape[1:] == [32, 32, 3] and not isinstance(graph_input.shape[0], int)
    assert [o.name for o in model.session.get_outputs()] == ["probabilities"]
    assert model.predict(converted["preprocessed"][:3]).shape == (3, 10)


def test_onnx_file_is_a_valid_model(converted):
    import onnx as onnx_lib

    onnx_lib.checker.check_model(str(converted["path"]))
    assert np.isfinite(onnx.OnnxModel(converted["path"]).predict(converted["preprocessed"])).all()


def test_preactivation_affine_is_one_batchnorm_node(converted):
    import onnx as onnx_lib

    graph = onnx_lib.load(str(converted["path"])).graph
    ops = [node.op_type for node in graph.node]
    # Every BatchNorm of the tiny net (7 that act on a sum or a convolution's output) is one node that
    # onnxruntime fuses with the ReLU after it; no Mul by a per-channel constant is left.
    assert ops.count("BatchNormalization") >= 3 and "Mul" not in ops
    assert "Transpose" not in ops[1:], ops


def test_affine_to_batchnorm_computes_the_same_and_leaves_shared_products(tmp_path):
    import onnx as onnx_lib
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    scale, shift = rng.normal(size=(1, 4, 1, 1)).astype(np.float32), rng.normal(size=(1, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["affine"]),
        helper.make_node("Relu", ["affine"], ["y"]),
        # A product used twice must stay: the rewrite would drop the second use.
        helper.make_node("Mul", ["x", "scale"], ["shared"]),
        helper.make_node("Add", ["shared", "shift"], ["z1"]),
        helper.make_node("Relu", ["shared"], ["z2"]),
    ]
    graph = helper.make_graph(
        nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 3, 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 4, 3, 3]) for name in ("y", "z1", "z2")],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx.OPSET)])
    before = tmp_path / "before.onnx"
    onnx_lib.save(model, str(before))
    assert onnx.affine_to_batchnorm(model) == 1
    after = tmp_path / "after.onnx"
    onnx_lib.save(model, str(after))
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 1
    import onnxruntime as ort

    x = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})  # noqa: E731
    for old, new in zip(run(before), run(after)):
        np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-6)
