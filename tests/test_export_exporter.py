"""export.exporter: a whole export run — layout, parity gate, folding, versions, faults."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_preresnet import export
import export_testing
import keras_preresnet
import model_testing
from keras_preresnet.export import exporter, parity, tflite, versions
from support import REPO


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory, cifar_dir):
    root = tmp_path_factory.mktemp("images")
    export_testing.write_cifar_images(cifar_dir, root / "parity", count=8)
    export_testing.write_cifar_images(cifar_dir, root / "calibration", count=8, start=200)
    return root


@pytest.fixture(scope="module")
def servable(cifar_dir):
    return export_testing.tiny_servable(cifar_dir)


def _quiet(*_):
    pass


def _tree(path):
    return sorted(os.path.relpath(os.path.join(root, name), path)
                  for root, dirs, files in os.walk(path) for name in dirs + files)


def test_every_format_is_published_with_its_parity_report(servable, image_dirs, tmp_path):
    result = export.export_model(
        servable, tmp_path, formats=("saved_model", "tflite", "onnx"), quantize=("int8",),
        parity_data=image_dirs / "parity", calibration_data=image_dirs / "calibration", log=_quiet,
    )
    assert result.version == 1
    assert sorted(os.listdir(tmp_path)) == ["tiny", "tiny-onnx", "tiny-tflite"]
    assert result.paths == {
        "saved_model": str(tmp_path / "tiny" / "1"), "tflite": str(tmp_path / "tiny-tflite" / "1"),
        "onnx": str(tmp_path / "tiny-onnx" / "1"),
    }
    assert sorted(os.listdir(tmp_path / "tiny-tflite" / "1")) == [
        "float32.tflite", "int8.tflite", "parity.json", "serving.json"]
    for folder in (tmp_path / "tiny" / "1" / "assets.extra", tmp_path / "tiny-tflite" / "1", tmp_path / "tiny-onnx" / "1"):
        record = json.loads((folder / "serving.json").read_text())
        assert record == dict(name="tiny", labels=list(servable.labels), preprocessing="cifar10", image_size=32)
    assert os.path.exists(tmp_path / "tiny" / "1" / "saved_model.pb")
    saved = json.loads((tmp_path / "tiny" / "1" / "assets.extra" / "parity.json").read_text())
    assert saved["model"] == "tiny" and len(saved["parity_images"]) == 8
    assert [r.artifact for r in result.reports] == [
        "saved_model/serving_default", "saved_model/preprocessed", "tflite/float32", "tflite/int8", "onnx"]
    for report in result.reports:
        assert report.images == 8
        if report.tolerance is not None:
            assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0, report
        else:  # int8 (8 calibration images) of a net whose top-1 class varies over the parity images
            # Measured 0.75, 0.43 (0.88, 0.21 before the stage-opening units fed their shortcuts the
            # pre-activated input) on a random net of depth 8 and 8 images.
            assert report.top1_agreement >= 0.75 and 0 < report.max_abs_diff < 0.5, report
    onnx_saved = json.loads((tmp_path / "tiny-onnx" / "1" / "parity.json").read_text())
    assert onnx_saved["reports"][0]["passed"] is True


def test_next_export_gets_the_next_version_and_an_existing_one_is_refused(servable, image_dirs, tmp_path):
    kwargs = dict(formats=("saved_model",), parity_data=image_dirs / "parity", parity_images=2, log=_quiet)
    assert export.export_model(servable, tmp_path, **kwargs).version == 1
    assert export.export_model(servable, tmp_path, **kwargs).version == 2
    with pytest.raises(FileExistsError, match=r"tiny/2' already exists"):
        export.export_model(servable, tmp_path, version=2, **kwargs)
    assert sorted(os.listdir(tmp_path / "tiny")) == ["1", "2"]


def test_existing_version_of_one_format_is_refused_before_any_work(servable, image_dirs, tmp_path):
    (tmp_path / "tiny-tflite" / "3").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="tiny-tflite/3"):
        export.export_model(servable, tmp_path, formats=("saved_model", "tflite"), version=3,
                            parity_data=image_dirs / "parity", log=_quiet)
    assert _tree(tmp_path) == ["tiny", "tiny-tflite", "tiny-tflite/3"]


def test_interrupted_export_leaves_no_partial_artifact(servable, image_dirs, tmp_path, monkeypatch):
    real_convert = tflite.convert

    def convert_then_fail(saved_model_dir, variant, *args, **kwargs):
        if variant == "dynamic":
            raise KeyboardInterrupt("interrupted half-way")
        return real_convert(saved_model_dir, variant, *args, **kwargs)

    monkeypatch.setattr(tflite, "convert", convert_then_fail)
    with pytest.raises(KeyboardInterrupt):
        export.export_model(servable, tmp_path, formats=("saved_model", "tflite"), quantize=("dynamic",),
                            parity_data=image_dirs / "parity", parity_images=2, log=_quiet)
    # The SavedModel and float32 TFLite were complete, but nothing appears under a final name,
    # and the staging folders are gone.
    assert _tree(tmp_path) == ["tiny", "tiny-tflite"]


def test_next_export_removes_the_staging_folders_of_killed_exports_only(servable, image_dirs, tmp_path):
    base = tmp_path / "tiny"
    # An export process that dies without cleaning up (as under SIGKILL) leaves its staging folder.
    dead = subprocess.run(
        [sys.executable, "-c", "import os, sys; from keras_preresnet.export import versions; "
         "print(versions.StagedVersion(sys.argv[1], 1).path); os._exit(0)", str(base)],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip()
    live = versions.StagedVersion(base, 7)  # this process's, still being written
    other_machine = base / ".staging-1-elsewhere-1-abc"
    other_machine.mkdir()
    messages = []
    result = export.export_model(servable, tmp_path, formats=("saved_model",), parity_data=image_dirs / "parity",
                                 parity_images=2, log=messages.append)
    assert result.version == 1 and not os.path.exists(dead)
    assert f"Removed {dead}, left behind by an export that was killed." in messages
    assert sorted(os.listdir(base)) == sorted(["1", os.path.basename(live.path), other_machine.name])
    live.discard()


def test_float_artifact_that_disagrees_is_not_published(servable, image_dirs, tmp_path, monkeypatch):
    other = export_testing.tiny_servable(seed=1).model
    monkeypatch.setattr(keras_preresnet, "fold_batchnorm", lambda model: other)
    with pytest.raises(parity.ParityError, match="Nothing was published"):
        export.export_model(servable, tmp_path, formats=("saved_model",), fold_batchnorm=True,
                            parity_data=image_dirs / "parity", parity_images=4, log=_quiet)
    assert _tree(tmp_path) == ["tiny"]


def test_fold_batchnorm_export_matches_the_unfolded_keras_model(servable, image_dirs, tmp_path):
    folded = keras_preresnet.fold_batchnorm(servable.model)
    assert len(model_testing.batch_norms(folded)) < len(model_testing.batch_norms(servable.model))
    result = export.export_model(servable, tmp_path, formats=("saved_model", "tflite"), fold_batchnorm=True,
                                 parity_data=image_dirs / "parity", log=_quiet)
    assert all(r.passed and r.max_abs_diff <= 1e-4 for r in result.reports), result.reports
    # The BatchNorm statistics are random, so an export that ignored them could not pass.
    assert np.std(servable.model.get_layer("post_bn").get_weights()[2]) > 0.01


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(formats=("tflite",), quantize=("int8",)), ValueError, "int8 quantisation needs a representative dataset"),
        (dict(formats=("saved_model",), quantize=("float16",)), ValueError, "add 'tflite' to the formats"),
        (dict(formats=("savedmodel",)), ValueError, r"`formats` must be a subset of"),
        (dict(formats=("tflite",), quantize=("int4",)), ValueError, r"`quantize` must be a subset of"),
        (dict(formats=("saved_model",), version=0), ValueError, "positive integer"),
    ],
)
def test_bad_arguments_are_clear_errors(servable, image_dirs, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export.export_model(servable, tmp_path, parity_data=image_dirs / "parity", log=_quiet, **kwargs)
    assert _tree(tmp_path) == []


def test_calibration_folder_without_images_is_a_clear_error(servable, image_dirs, tmp_path):
    empty = tmp_path / "calibration"
    empty.mkdir()
    (empty / "labels.csv").write_text("not an image")
    with pytest.raises(ValueError, match="calibration folder .* holds no images"):
        export.export_model(servable, tmp_path / "out", formats=("tflite",), quantize=("int8",),
                            calibration_data=empty, parity_data=image_dirs / "parity", log=_quiet)
    assert not (tmp_path / "out").exists()


def test_parity_needs_real_images(servable, tmp_path):
    with pytest.raises(ValueError, match="Parity is measured on real images"):
        export.export_model(servable, tmp_path, log=_quiet)


def test_float_only_saved_model_serves_floats_as_its_default_signature(servable, image_dirs, tmp_path):
    import tensorflow as tf

    from keras_preresnet.runtimes import FLOAT_INPUT, SavedModelClassifier

    result = export.export_model(servable, tmp_path, formats=("saved_model_float",), fold_batchnorm=True,
                                 parity_data=image_dirs / "parity", log=_quiet)
    path = result.paths["saved_model_float"]
    assert path == os.path.join(str(tmp_path), "tiny-float", "1")
    (report,) = result.reports
    assert report.artifact == "saved_model_float" and report.passed and report.max_abs_diff <= 1e-4
    # One signature, numbers in and out: what OpenVINO's and TF-TRT's converters can read.
    loaded = tf.saved_model.load(path)
    assert list(loaded.signatures) == ["serving_default"]
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 32, 32, 3]
    assert list(signature.structured_input_signature[1]) == [FLOAT_INPUT]
    assert {name: out.dtype for name, out in signature.structured_outputs.items()} == {"probabilities": tf.float32}
    # The predict command's runner reads it like the full SavedModel's float signature.
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(SavedModelClassifier(path).predict(x), servable.model.predict(x, verbose=0), atol=1e-4)
