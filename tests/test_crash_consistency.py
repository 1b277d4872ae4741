"""Crash consistency: train, export and convert killed at every write point of a small run, then run again.

``$KERAS_PRERESNET_CRASH_AT=N`` (``keras_preresnet.files``) stops a command hard at its N-th write
point, with no clean-up, as a SIGKILL would. For N = 1, 2, ... until the command finishes without
reaching N (so every write point of the run is visited), each test kills the command at N, checks what
a reader would see at that moment, runs the same command again, and checks the end state.
"""

import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_preresnet import files
from model_testing import weights_file_arrays
from support import REPO, subprocess_env

# Two commands at a time: CI has two cores, and each command is mostly single-threaded start-up.
PARALLEL = 2


def _env(**extra):
    env = subprocess_env(**dict(dict(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow"), **extra))
    env.pop(files.CRASH_ENV, None)
    return env


def _run(command, env, crash_at=None, timeout=600):
    if crash_at is not None:
        env = dict(env, **{files.CRASH_ENV: str(crash_at)})
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def sweep(make_case, check_at_crash, check_after_rerun):
    """Kills at every write point: ``make_case(n)`` gives ``(command, env, folder)`` in a fresh folder;
    returns the number of write points and the uninterrupted run's folder."""

    def one(n):
        command, env, folder = make_case(n)
        crashed = _run(command, env, crash_at=n)
        if crashed.returncode == 0:
            return n, folder, None
        assert crashed.returncode == files.CRASH_EXIT_STATUS, (n, crashed.stderr[-3000:])
        check_at_crash(folder, n)
        rerun = _run(command, env)
        assert rerun.returncode == 0, (n, rerun.stderr[-3000:])
        check_after_rerun(folder, n)
        return n, folder, rerun

    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        n = 0
        while True:
            batch = [pool.submit(one, n + i + 1) for i in range(PARALLEL)]
            for future in batch:
                point, folder, rerun = future.result()
                if rerun is None:
                    return point - 1, folder
            n += PARALLEL


def assert_same_weights(path, reference):
    ours, theirs = weights_file_arrays(path), weights_file_arrays(reference)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{path}: {name}")


def temporaries(folder):
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if ".tmp-" in name]


# -- train ---------------------------------------------------------------------------------------------

STEPS_PER_EPOCH, EPOCHS = 2, 2


def train_command(cifar_dir, model_dir, extra=()):
    return [sys.executable, "-m", "keras_preresnet.train", "--config=cifar10_preact_resnet110", "--depth=8",
            "--recipe=cifar_public_code", "--lr_scaling=none", f"--data_dir={cifar_dir}", f"--model_dir={model_dir}",
            f"--epochs={EPOCHS}", "--batch_size=32", f"--train_examples={32 * STEPS_PER_EPOCH}", "--eval_examples=32",
            "--deterministic", "--noprogress", *extra]


def metrics_rows(model_dir):
    path = os.path.join(model_dir, "metrics.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert None not in row.values() and "" not in row.values(), f"torn row {row}"
        float(row["test_error"])
    return rows


def check_train_at_crash(model_dir, n):
    epochs = [int(row["epoch"]) for row in metrics_rows(model_dir)]
    assert epochs == list(range(1, len(epochs) + 1)), (n, epochs)
    for name in ("last.weights.h5", "best.weights.h5"):
        if os.path.exists(os.path.join(model_dir, name)):
            weights_file_arrays(os.path.join(model_dir, name))  # a complete HDF5 file


def check_train_after_rerun(model_dir, n):
    rows = metrics_rows(model_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1)), (n, rows)
    assert [int(r["step"]) for r in rows] == [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)], n
    summary = json.loads(open(os.path.join(model_dir, "metrics.json")).read())
    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH and summary["epochs"] == EPOCHS, n
    best = min(rows, key=lambda r: float(r["test_error"]))
    assert summary["best_epoch"] == int(best["epoch"]), n
    with open(os.path.join(model_dir, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", n
    last, best_weights = (os.path.join(model_dir, name) for name in ("last.weights.h5", "best.weights.h5"))
    same = all(np.array_equal(a, b) for a, b in
               zip(weights_file_arrays(last).values(), weights_file_arrays(best_weights).values()))
    assert same == (best is rows[-1]), f"best.weights.h5 is not the weights of epoch {best['epoch']} (point {n})"
    assert temporaries(model_dir) == [], n


def test_train_killed_at_every_write_point_resumes_to_a_consistent_run(tmp_path, cifar_dir):
    started = time.time()

    def make_case(n):
        model_dir = tmp_path / f"run{n}"
        return train_command(cifar_dir, model_dir), _env(), str(model_dir)

    points, uninterrupted = sweep(make_case, check_train_at_crash, check_train_after_rerun)
    # run.json; per epoch the checkpoint, last and (first epoch) best weights, metrics.csv, curves;
    # metrics.json: one point per checkpoint, two per published file.
    assert points >= 2 + EPOCHS * 7 + 2
    print(f"train: {points} write points, swept in {time.time() - started:.0f} s")
    # Under --deterministic a killed and resumed run ends bit-identical to the uninterrupted one.
    for n in range(1, points + 1):
        for name in ("last.weights.h5", "best.weights.h5"):
            assert_same_weights(os.path.join(make_case(n)[2], name), os.path.join(uninterrupted, name))


# -- export --------------------------------------------------------------------------------------------

SAVED_MODEL_FILES = ("saved_model.pb", os.path.join("variables", "variables.index"),
                     os.path.join("assets.extra", "parity.json"))
EXPORT_FILES = {"": SAVED_MODEL_FILES, "-tflite": ("float32.tflite", "parity.json"),
                "-onnx": ("model.onnx", "parity.json")}


@pytest.fixture(scope="module")
def parity_images(tmp_path_factory, cifar_dir):
    import export_testing

    folder = tmp_path_factory.mktemp("parity_images")
    export_testing.write_cifar_images(cifar_dir, folder, count=2)
    return folder


def published_versions(out):
    """``{(base, version): folder}`` of every numeric version folder under ``out``."""
    found = {}
    for base in os.listdir(out) if os.path.isdir(out) else []:
        for version in os.listdir(os.path.join(out, base)):
            if version.isdigit():
                found[base, version] = os.path.join(out, base, version)
    return found


def check_export_at_crash(out, n):
    for (base, _), folder in published_versions(out).items():
        for name in EXPORT_FILES[base[len("ResNet20"):]]:
            assert os.path.isfile(os.path.join(folder, name)), f"incomplete version {folder} at point {n}"


def check_export_after_rerun(out, n):
    import tensorflow as tf

    versions = published_versions(out)
    check_export_at_crash(out, n)
    assert {base for base, _ in versions} >= {"ResNet20"}, (n, versions)
    for (base, _), folder in versions.items():
        if base == "ResNet20":
            serve = tf.saved_model.load(folder).signatures["serving_default"]
            png = tf.io.encode_png(tf.zeros([32, 32, 3], tf.uint8))
            assert serve(images=tf.stack([png]))["probabilities"].shape == (1, 10)
        leftovers = [name for name in os.listdir(os.path.join(out, base)) if not name.isdigit()]
        assert leftovers == [], f"left in {base} after the rerun of point {n}: {leftovers}"
    # TensorFlow's AutoGraph keeps the code it generates in TMPDIR until its process exits: a killed
    # process leaves those files. A converter library (TFLite or tf2onnx) writes a 51-byte session id, `.ses`, into TMPDIR
    # on every run, killed or not (measured on an uninterrupted export). Nothing else may stay there.
    scratch = [name for name in os.listdir(os.path.join(os.path.dirname(out), "tmp"))
               if not name.startswith("__autograph_generated_file") and name != ".ses"]
    assert scratch == [], f"left in TMPDIR after the rerun of point {n}: {scratch}"


def export_case(tmp_path, parity_images, formats):
    """``make_case(n)``: the export of ResNet20 in ``formats`` to a fresh folder, with a TMPDIR of its own."""

    def make_case(n):
        case = tmp_path / f"case{n}"
        (case / "tmp").mkdir(parents=True)
        command = [sys.executable, "-m", "keras_preresnet.export", "--model=ResNet20", f"--parity_data={parity_images}",
                   "--parity_images=2", f"--formats={formats}", f"--out={case / 'out'}"]
        return command, _env(TMPDIR=str(case / "tmp")), str(case / "out")

    return make_case


def export_sweep(tmp_path, parity_images, formats):
    return sweep(export_case(tmp_path, parity_images, formats), check_export_at_crash, check_export_after_rerun)


def test_export_killed_at_every_write_point_never_shows_an_incomplete_version(tmp_path, parity_images):
    started = time.time()
    points, _ = export_sweep(tmp_path, parity_images, "saved_model")
    assert points >= 4  # staging folder, SavedModel, parity.json (2), publish
    print(f"export: {points} write points, swept in {time.time() - started:.0f} s")


@pytest.mark.slow
def test_export_of_every_format_killed_at_every_write_point(tmp_path, parity_images):
    points, _ = export_sweep(tmp_path, parity_images, "saved_model,tflite,onnx")
    assert points >= 15


# -- convert -------------------------------------------------------------------------------------------

BLOCKS = (1, 1, 1, 1)
# The converter's command line and weights='imagenet', run with ResNet-200 shrunk to BLOCKS units.
SMALL_RESNET200 = f"from keras_preresnet import models; models.IMAGENET_UNITS[200] = ('bottleneck', {BLOCKS}); "
CONVERT_CLI = SMALL_RESNET200 + "import sys; from keras_preresnet import convert; sys.exit(convert.main(sys.argv[1:]))"
IMAGENET_WEIGHTS = SMALL_RESNET200 + "models.PreActResNet200(weights='imagenet')"


@pytest.fixture(scope="module")
def t7_and_reference(tmp_path_factory):
    """A synthetic resnet-200.t7 of BLOCKS units and its uninterrupted conversion."""
    import torch7_writer

    folder = tmp_path_factory.mktemp("t7")
    t7 = str(folder / "resnet-200.t7")
    torch7_writer.save(t7, torch7_writer.released_preresnet(blocks=BLOCKS))
    reference = str(folder / "reference.weights.h5")
    result = _run([sys.executable, "-c", CONVERT_CLI, t7, reference], _env())
    assert result.returncode == 0, result.stderr[-3000:]
    return t7, reference


def test_convert_killed_at_every_write_point_leaves_no_incomplete_file(tmp_path, t7_and_reference):
    t7, reference = t7_and_reference

    def make_case(n):
        out = tmp_path / f"case{n}" / "model.weights.h5"
        return [sys.executable, "-c", CONVERT_CLI, t7, str(out)], _env(), str(out)

    def at_crash(out, n):
        if os.path.exists(out):
            assert_same_weights(out, reference)

    def after_rerun(out, n):
        assert_same_weights(out, reference)
        assert os.listdir(os.path.dirname(out)) == ["model.weights.h5"], n

    points, _ = sweep(make_case, at_crash, after_rerun)
    assert points == 2  # the temporary complete, the file in place


def test_weights_cache_killed_at_every_write_point_holds_only_complete_files(tmp_path, t7_and_reference):
    from keras_preresnet.pretrained import weights

    t7, reference = t7_and_reference
    entry = weights.PRETRAINED["preact_resnet200"]
    source = open(t7, "rb").read()

    def make_case(n):
        home = tmp_path / f"case{n}"
        env = _env(KERAS_HOME=str(home), **{weights.URL_ENV: "file://" + t7})
        return [sys.executable, "-c", IMAGENET_WEIGHTS], env, os.path.join(home, weights.CACHE_SUBDIR)

    def at_crash(cache, n):
        cached = os.path.join(cache, entry.torch_file)
        if os.path.exists(cached):
            assert open(cached, "rb").read() == source, n
        keras_file = os.path.join(cache, entry.keras_file)
        if os.path.exists(keras_file):
            assert_same_weights(keras_file, reference)
            if os.path.exists(keras_file + weights.CHECKSUM_SUFFIX):
                assert weights.verify_checksum(keras_file, "preact_resnet200") == weights.file_sha256(keras_file), n

    def after_rerun(cache, n):
        at_crash(cache, n)
        expected = [entry.torch_file, entry.keras_file, entry.keras_file + weights.CHECKSUM_SUFFIX]
        assert sorted(os.listdir(cache)) == sorted(expected), n

    points, _ = sweep(make_case, at_crash, after_rerun)
    assert points == 6  # download, conversion and the checksum beside it: two points each
