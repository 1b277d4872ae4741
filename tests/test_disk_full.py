"""A full disk: train, export and convert with the disk filling at their N-th write, then run again.

``$KERAS_PRERESNET_DISK_FULL_AT=N`` (``keras_preresnet.files``) drops a command's file-size limit to 0 when
its N-th write starts, so that write and every later one fail for real (EFBIG, as ENOSPC on a full
disk) inside h5py, TensorFlow or Python. Each case checks that the command ends with one line on stderr
naming the file and exit status 1 (no traceback, no crash), that no temporary is left and the files
written before are intact, and that the same command run again (space freed) ends as an uninterrupted
run does. The fast cases pick the writes that fail inside each library; the slow ones sweep every write.
"""

import concurrent.futures
import os
import sys

import pytest

from keras_preresnet import files
from test_crash_consistency import (CONVERT_CLI, PARALLEL, _env, _run, assert_same_weights, check_export_after_rerun,
                                    check_export_at_crash, check_train_after_rerun, check_train_at_crash, export_case,
                                    metrics_rows, parity_images, published_versions, t7_and_reference, temporaries,
                                    train_command)

__all__ = ["parity_images", "t7_and_reference"]  # fixtures shared with the crash-consistency tests

# Train's writes in order: run.json; per epoch its checkpoint, last.weights.h5, best.weights.h5 (where the
# epoch is the best so far), metrics.csv, curves.png; then metrics.json. The run of train_command tests
# better in epoch 2 than in epoch 1, so both epochs write best.weights.h5.
TRAIN_WRITES = 1 + 5 + 5 + 1
TRAIN_CHECKPOINT_OF_EPOCH_2, TRAIN_LAST_WEIGHTS_OF_EPOCH_2 = 7, 8


def _with_full_disk(env, n):
    return dict(env, **{files.DISK_FULL_ENV: str(n)})


def check_one_line_error(result, program, n, alone=True):
    """Exit status 1 and the error as the last line of stderr, the only one where ``alone`` (else the
    command's usual warnings, such as tf2onnx's, may come before it)."""
    assert result.returncode == 1, (n, result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Fatal Python error" not in result.stderr, (n, result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or not alone, (n, result.stderr[-3000:])
    assert lines[-1].startswith(f"{program}error: Could not write "), (n, lines[-1])
    assert "File too large" in lines[-1] and "Free space" in lines[-1], (n, lines[-1])


def fill_disk_at(make_case, points, program, check_after_failure, check_after_rerun, alone=True):
    """Runs ``make_case(n)``'s command with the disk filling at write ``n`` for each of ``points`` (all
    writes, until the command finishes, where ``points`` is None), then again without; returns
    ``{n: folder}`` of the cases and the number of writes where every write was swept."""

    def one(n):
        command, env, folder = make_case(n)
        failed = _run(command, _with_full_disk(env, n))
        if failed.returncode == 0:
            assert points is None, f"write {n} is past the command's last write"
            return n, folder, False
        check_one_line_error(failed, program, n, alone)
        assert temporaries(folder) == [], (n, temporaries(folder))
        check_after_failure(folder, n)
        rerun = _run(command, env)
        assert rerun.returncode == 0, (n, rerun.stderr[-3000:])
        check_after_rerun(folder, n)
        return n, folder, True

    folders = {}
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        if points is not None:
            for n, folder, _ in pool.map(one, points):
                folders[n] = folder
            return folders, None
        n = 0
        while True:
            for point, folder, failed in pool.map(one, range(n + 1, n + PARALLEL + 1)):
                if not failed:
                    return folders, point - 1
                folders[point] = folder
            n += PARALLEL


# -- train ---------------------------------------------------------------------------------------------

def check_train_after_failure(model_dir, n):
    check_train_at_crash(model_dir, n)
    # What the failed write would have replaced, or added, is the previous epoch's or absent.
    checkpoints = os.path.join(model_dir, "checkpoints")
    if n == TRAIN_CHECKPOINT_OF_EPOCH_2:  # TensorFlow's shards of the failed checkpoint are gone
        assert [int(row["epoch"]) for row in metrics_rows(model_dir)] == [1], n
        assert sorted(os.listdir(checkpoints)) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]


def train_sweep(tmp_path, cifar_dir, points):
    def make_case(n):
        model_dir = tmp_path / f"run{n}"
        return train_command(cifar_dir, model_dir), _env(), str(model_dir)

    reference = tmp_path / "uninterrupted"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        uninterrupted = pool.submit(_run, train_command(cifar_dir, reference), _env())
        folders, writes = fill_disk_at(make_case, points, "train: ", check_train_after_failure,
                                       check_train_after_rerun)
        assert uninterrupted.result().returncode == 0
    # Under --deterministic a run stopped by a full disk and resumed ends bit-identical to one never stopped.
    for n, folder in folders.items():
        for name in ("last.weights.h5", "best.weights.h5"):
            assert_same_weights(os.path.join(folder, name), os.path.join(reference, name))
    return folders, writes


def test_train_stopped_by_a_full_disk_in_a_checkpoint_or_weights_file_resumes_bit_identical(tmp_path, cifar_dir):
    # TensorFlow's SaveV2 and h5py fail inside their own code: the checkpoint of epoch 2 keeps epoch 1's.
    train_sweep(tmp_path, cifar_dir, [TRAIN_CHECKPOINT_OF_EPOCH_2, TRAIN_LAST_WEIGHTS_OF_EPOCH_2])


@pytest.mark.slow
def test_train_stopped_by_a_full_disk_at_every_write_resumes_bit_identical(tmp_path, cifar_dir):
    _, writes = train_sweep(tmp_path, cifar_dir, None)
    assert writes == TRAIN_WRITES


# -- export --------------------------------------------------------------------------------------------

def check_export_after_failure(out, n):
    check_export_at_crash(out, n)
    assert published_versions(out) == {}, n  # the version is published whole or not at all
    for base in os.listdir(out) if os.path.isdir(out) else []:
        assert os.listdir(os.path.join(out, base)) == [], (n, os.listdir(os.path.join(out, base)))


def test_export_stopped_by_a_full_disk_in_the_savedmodel_publishes_nothing_then_exports(tmp_path, parity_images):
    # Write 1 is the SavedModel (SaveV2 fails), write 2 its parity.json (Python's write fails).
    fill_disk_at(export_case(tmp_path, parity_images, "saved_model"), [1, 2], "export: ",
                 check_export_after_failure, check_export_after_rerun)


@pytest.mark.slow
def test_export_of_every_format_stopped_by_a_full_disk_at_every_write(tmp_path, parity_images):
    # SavedModel, parity.json, serving.json; the converters' SavedModel, float32.tflite, parity.json,
    # serving.json; model.onnx, parity.json, serving.json. (New folders and renames write no bytes.)
    _, writes = fill_disk_at(export_case(tmp_path, parity_images, "saved_model,tflite,onnx"), None, "export: ",
                             check_export_after_failure, check_export_after_rerun, alone=False)
    assert writes == 10


# -- convert -------------------------------------------------------------------------------------------

def test_convert_stopped_by_a_full_disk_keeps_the_old_file_then_converts(tmp_path, t7_and_reference):
    t7, reference = t7_and_reference
    out = tmp_path / "model.weights.h5"
    out.write_bytes(b"an older conversion")

    def make_case(n):
        return [sys.executable, "-c", CONVERT_CLI, t7, str(out)], _env(), str(tmp_path)

    def after_failure(folder, n):
        assert out.read_bytes() == b"an older conversion" and os.listdir(folder) == ["model.weights.h5"]

    def after_rerun(folder, n):
        assert_same_weights(out, reference)

    # Run by `python -c` (to shrink the network), TensorFlow prints its start-up lines before the error.
    fill_disk_at(make_case, [1], "convert: ", after_failure, after_rerun, alone=False)
