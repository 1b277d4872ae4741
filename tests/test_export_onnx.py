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


def test_onnx_graph_is_nhwc_with_dynamic_batch(converted):
    model = onnx.OnnxModel(converted["path"])
    (graph_input,) = model.session.get_inputs()
    assert graph_input.shape[1:] == [32, 32, 3] and not isinstance(graph_input.shape[0], int)
    assert [o.name for o in model.session.get_outputs()] == ["probabilities"]
    assert model.predict(converted["preprocessed"][:3]).shape == (3, 10)


def test_onnx_file_is_a_valid_model(converted):
    import onnx as onnx_lib

    onnx_lib.checker.check_model(str(converted["path"]))
    assert np.isfinite(onnx.OnnxModel(converted["path"]).predict(converted["preprocessed"])).all()
