"""End to end: ``python -m keras_preresnet.export`` as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

import export_testing
import keras_preresnet
from support import REPO



def run_cli(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "keras_preresnet.export", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, cifar_dir):
    folder = tmp_path_factory.mktemp("cli_images")
    export_testing.write_cifar_images(cifar_dir, folder, count=8)
    return folder


def test_exports_every_format_and_prints_the_parity_report(image_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(5)))
    out = tmp_path / "models"
    result = run_cli(
        "--model=ResNet20", f"--classes={labels}", "--name=resnet20_5",
        "--formats=saved_model,tflite,onnx", "--quantize=float16,dynamic,int8",
        f"--calibration_data={image_dir}", f"--out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for artifact in ["saved_model/serving_default", "saved_model/preprocessed", "tflite/float32",
                     "tflite/float16", "tflite/dynamic", "tflite/int8", "onnx"]:
        assert artifact in result.stdout
    assert "FAILED" not in result.stdout
    assert sorted(os.listdir(out)) == ["resnet20_5", "resnet20_5-onnx", "resnet20_5-tflite"]
    reports = json.loads((out / "resnet20_5-tflite" / "1" / "parity.json").read_text())["reports"]
    assert [r["artifact"] for r in reports] == ["tflite/float32", "tflite/float16", "tflite/dynamic", "tflite/int8"]
    assert reports[0]["max_abs_diff"] <= 1e-4 and reports[0]["images"] == 8

    import tensorflow as tf

    loaded = tf.saved_model.load(str(out / "resnet20_5" / "1"))
    png = tf.io.encode_png(tf.zeros([32, 32, 3], tf.uint8))
    labels_out = loaded.signatures["serving_default"](images=tf.stack([png]))["labels"].numpy()
    assert {label.decode() for label in labels_out[0]} == {f"class {i}" for i in range(5)}


def test_unknown_model_name(tmp_path):
    result = run_cli("--model=PreActResNet7", f"--out={tmp_path}")
    assert result.returncode == 1
    assert "export: error: Unknown model 'PreActResNet7'" in result.stderr


def test_weights_that_do_not_fit_the_model(image_dir, tmp_path):
    weights = tmp_path / "other.weights.h5"
    keras_preresnet.build_resnet(8, unit="full_preactivation").save_weights(weights)
    result = run_cli("--model=ResNet20", f"--weights={weights}", f"--parity_data={image_dir}", f"--out={tmp_path}/m")
    assert result.returncode == 1
    assert "export: error: Could not load the weights file" in result.stderr
    assert not (tmp_path / "m").exists()


def test_output_folder_already_holding_that_version(image_dir, tmp_path):
    (tmp_path / "ResNet20" / "4").mkdir(parents=True)
    result = run_cli("--model=ResNet20", "--version=4", f"--parity_data={image_dir}", f"--out={tmp_path}")
    assert result.returncode == 1
    assert "already exists; a published version is never overwritten" in result.stderr
    assert os.listdir(tmp_path / "ResNet20") == ["4"] and os.listdir(tmp_path / "ResNet20" / "4") == []


@pytest.mark.parametrize("flag, message", [
    ("--out={file}", "export: error: `out` must be a folder (or a path to create one); '{file}' is a file"),
    ("--out={file}/models", "export: error: `out` must be a folder (or a path to create one); '{file}' is a file"),
    ("--preprocessing=bogus", "export: error: `preprocessing` must be one of ['imagenet', 'cifar10', 'cifar100']; "
                              "received preprocessing='bogus'."),
])
def test_bad_flag_is_one_line_naming_it_and_what_it_accepts(image_dir, tmp_path, flag, message):
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    args = [flag.format(file=file)] + ([] if flag.startswith("--out") else [f"--out={tmp_path}/m"])
    result = run_cli("--model=ResNet20", f"--parity_data={image_dir}", *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message.format(file=file) in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_calibration_folder_without_images(tmp_path):
    (tmp_path / "calibration").mkdir()
    result = run_cli("--model=ResNet20", "--formats=tflite", "--quantize=int8",
                     f"--calibration_data={tmp_path / 'calibration'}", f"--out={tmp_path}/m")
    assert result.returncode == 1
    assert "calibration folder" in result.stderr and "holds no images" in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_preact_resnet200_exports_to_every_format_with_parity(cifar_dir, tmp_path):
    from keras_preresnet.export import images as images_lib
    from keras_preresnet.export import servable as servable_lib

    images = tmp_path / "images"
    files = export_testing.write_cifar_images(cifar_dir, images, count=4)
    servable = servable_lib.build("PreActResNet200")
    weights = tmp_path / "preact_resnet200.weights.h5"
    export_testing.plausible_random_weights(servable.model, images_lib.preprocessed_batch(servable, files))
    servable.model.save_weights(weights)
    del servable
    out = tmp_path / "models"
    result = run_cli(
        "--model=PreActResNet200", f"--weights={weights}", "--formats=saved_model,tflite,onnx",
        "--quantize=float16,dynamic,int8", f"--calibration_data={images}", "--calibration_images=4",
        "--parity_images=4", f"--out={out}", timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)
    reports = json.loads((out / "PreActResNet200-tflite" / "1" / "parity.json").read_text())["reports"]
    reports += json.loads((out / "PreActResNet200-onnx" / "1" / "parity.json").read_text())["reports"]
    reports += json.loads((out / "PreActResNet200" / "1" / "assets.extra" / "parity.json").read_text())["reports"]
    assert len(reports) == 7
    for report in reports:
        assert report["images"] == 4
        if report["tolerance"] is not None:
            assert report["max_abs_diff"] <= 1e-4, report
        else:
            # Quantisation must change the probabilities a little (the check is not vacuous) but not wreck them.
            assert 0 < report["max_abs_diff"] < 0.5, report
