"""python -m keras_preresnet.predict: inputs, models of every kind, outputs, failures, Grad-CAM PNGs."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet import export
import export_testing
import keras_preresnet as kp
from keras_preresnet import cli, datasets, predict, preprocessing, runtimes


@pytest.fixture(scope="module")
def images(tmp_path_factory, cifar_dir):
    """Five real CIFAR test images as files (JPEG and PNG, two of them enlarged) and a corrupt one."""
    folder = tmp_path_factory.mktemp("images")
    files = export_testing.write_cifar_images(cifar_dir, folder / "photos", count=5,
                                              sizes=[(32, 32), (48, 64)])
    (folder / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthen nothing")
    return folder, files


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = kp.ResNet20()
    path = str(tmp_path_factory.mktemp("weights") / "resnet20.weights.h5")
    model.save_weights(path)
    return model, path


def _expected(model, files, name="cifar10", size=32):
    inputs = np.stack([preprocessing.preprocess(predict.read_image(f), name, size) for f in files])
    return model.predict(inputs, verbose=0)


def test_folder_is_labelled_and_the_corrupt_file_is_named_and_skipped(images, weights, tmp_path, capsys):
    folder, files = images
    model, path = weights
    out = tmp_path / "labels.json"
    status = predict.main([str(folder / "photos"), "--model=ResNet20", f"--weights={path}", f"--output={out}"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_FAILURE
    assert "skipped" in err and "broken.png" in err and "1 of 6 inputs" in err
    saved = json.loads(out.read_text())
    assert [row["file"] for row in saved["predictions"]] == sorted(files)
    assert [f["file"] for f in saved["failed"]] == [str(folder / "photos" / "broken.png")]
    expected = _expected(model, sorted(files))
    for row, probabilities in zip(saved["predictions"], expected):
        best = np.argsort(-probabilities)[:5]
        assert [p["index"] for p in row["predictions"]] == best.tolist()
        assert [p["label"] for p in row["predictions"]] == [datasets.CIFAR10_CLASSES[i] for i in best]
        np.testing.assert_allclose([p["probability"] for p in row["predictions"]], probabilities[best], atol=1e-5)


def test_globs_table_csv_and_top_k(images, weights, tmp_path, capsys):
    folder, files = images
    model, path = weights
    pngs = sorted(f for f in files if f.endswith(".png"))
    assert predict.main([str(folder / "photos" / "0*.png"), "--model=resnet20", f"--weights={path}",
                         "--top_k=2"]) == 0
    table = capsys.readouterr().out.splitlines()
    expected = _expected(model, pngs)
    assert len(table) == len(pngs)
    for line, file, probabilities in zip(table, pngs, expected):
        best = np.argmax(probabilities)
        assert line.startswith(file) and f"{datasets.CIFAR10_CLASSES[best]} {100 * probabilities[best]:.1f}%" in line
    out = tmp_path / "labels.csv"
    assert predict.main([files[0], "--model=ResNet20", f"--weights={path}", "--top_k=3", f"--output={out}"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3] and {r["file"] for r in rows} == {files[0]}
    assert float(rows[0]["probability"]) == pytest.approx(float(np.max(_expected(model, files[:1]))), abs=1e-5)
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]


def test_progress_bar_counts_the_images(images, weights, capsys):
    _, files = images
    assert predict.main(files[:3] + ["--model=ResNet20", f"--weights={weights[1]}", "--batch_size=1",
                                     "--progress"]) == 0
    err = capsys.readouterr().err
    assert "1/3 images" in err and "3/3 images" in err


@pytest.mark.parametrize("arguments, message", [
    (["--model=ResNet21"], "Unknown model 'ResNet21'"),
    (["--model=ResNet20", "--output=labels.txt"], "--output must end in .csv or .json"),
    (["--model=ResNet20", "--top_k=0"], "--top_k and --batch_size must be positive"),
    (["--model=ResNet20", "--weights=missing.weights.h5"], "`weights` must be None, 'imagenet' or the path"),
    (["--model=ResNet20", "--classes=0"], "positive number of classes"),
])
def test_user_errors_exit_1_with_one_line(images, arguments, message, capsys):
    _, files = images
    assert predict.main(files[:1] + arguments) == cli.EXIT_FAILURE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("predict: error:") and message in err[0]


def test_missing_file_and_empty_glob_are_reported_and_the_rest_labelled(images, weights, capsys):
    _, files = images
    status = predict.main([files[0], "nowhere/cat.jpg", "nowhere/*.png", "--model=ResNet20",
                           f"--weights={weights[1]}"])
    captured = capsys.readouterr()
    assert status == cli.EXIT_FAILURE and captured.out.startswith(files[0])
    assert "nowhere/cat.jpg: no such file or folder" in captured.err
    assert "nowhere/*.png: no file matches this pattern" in captured.err


def test_classes_as_a_number_labels_by_index(images, tmp_path, capsys):
    _, files = images
    keras.utils.set_random_seed(1)
    model = kp.ResNet20(classes=3)
    path = str(tmp_path / "three.weights.h5")
    model.save_weights(path)
    assert predict.main(files[:1] + ["--model=ResNet20", f"--weights={path}", "--classes=3"]) == 0
    line = capsys.readouterr().out
    best = int(np.argmax(_expected(model, files[:1])[0]))
    assert line.split()[1] == str(best) and line.count("%") == 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images, cifar_dir):
    servable = export_testing.tiny_servable()
    parity = tmp_path_factory.mktemp("parity")
    export_testing.write_cifar_images(cifar_dir, parity, count=4, start=100)
    out = tmp_path_factory.mktemp("models")
    result = export.export_model(servable, out, formats=("saved_model", "tflite", "onnx"), parity_data=parity,
                                 log=lambda *_: None)
    return servable, result.paths


@pytest.mark.parametrize("kind", ["saved_model", "tflite", "onnx"])
def test_exported_models_bring_their_labels_and_preprocessing(kind, exported, images, tmp_path):
    servable, paths = exported
    _, files = images
    model_path = {"saved_model": paths["saved_model"], "tflite": os.path.join(paths["tflite"], "float32.tflite"),
                  "onnx": os.path.join(paths["onnx"], "model.onnx")}[kind]
    out = tmp_path / "labels.json"
    assert predict.main(files + [f"--model={model_path}", f"--output={out}", "--top_k=10"]) == 0
    rows = json.loads(out.read_text())["predictions"]
    expected = _expected(servable.model, files)
    for row, probabilities in zip(rows, expected):
        got = np.zeros(10)
        got[[p["index"] for p in row["predictions"]]] = [p["probability"] for p in row["predictions"]]
        np.testing.assert_allclose(got, probabilities, atol=1e-4)
        assert row["predictions"][0]["label"] == servable.labels[int(np.argmax(probabilities))]


def test_exported_model_without_its_record_is_a_clear_error(exported, images, tmp_path, capsys):
    _, paths = exported
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(open(os.path.join(paths["onnx"], "model.onnx"), "rb").read())
    assert predict.main(images[1][:1] + [f"--model={lonely}"]) == cli.EXIT_FAILURE
    assert runtimes.RECORD_FILENAME in capsys.readouterr().err


def test_cam_writes_a_heat_map_png_per_image(images, weights, tmp_path):
    _, files = images
    cams = tmp_path / "cams"
    assert predict.main(files[:2] + ["--model=ResNet20", f"--weights={weights[1]}", f"--cam={cams}"]) == 0
    written = sorted(os.listdir(cams))
    assert written == sorted(os.path.splitext(os.path.basename(f))[0] + ".png" for f in files[:2])
    for name, file in zip(written, sorted(files[:2])):
        heat = tf.io.decode_png(tf.io.read_file(str(cams / name))).numpy()
        original = predict.read_image(file)
        assert heat.shape[2] == 3 and heat.shape[0] * original.shape[1] == heat.shape[1] * original.shape[0]
        assert heat.shape[0] >= original.shape[0]


def test_cam_of_an_exported_model_is_refused(exported, images, tmp_path, capsys):
    _, paths = exported
    status = predict.main(images[1][:1] + [f"--model={paths['saved_model']}", f"--cam={tmp_path}"])
    assert status == cli.EXIT_FAILURE and "--cam needs a Keras model" in capsys.readouterr().err
