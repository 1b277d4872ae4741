"""End to end: `python -m keras_preresnet.train` and `python -m keras_preresnet.train.evaluate` as a user runs them."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from support import REPO, subprocess_env

SMALL = ["--config=cifar10_preact_resnet110", "--depth=8", "--recipe=cifar_public_code", "--lr_scaling=none"]


def _train(*args, module="keras_preresnet.train", timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_the_configs():
    result = _train("--help")  # absl's --help exits with status 1 after printing the usage
    for name in ("cifar10_preact_resnet1001", "cifar100_resnet164", "cifar10_resnet110_exclusive_gating_bg-6",
                 "imagenet_preact_resnet200", "--strategy", "--precision", "--init_weights"):
        assert name in result.stdout
    # Each config names the tables it is a row of.
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("cifar10_resnet110 "))
    assert "[python -m keras_preresnet.train.table --table=resnet_table6,identity_table1,identity_table2,identity_table3]" in line


def test_command_lines_refuse_missing_flags_and_stray_arguments_but_list_without_them(tmp_path):
    from absl import app

    from keras_preresnet import cli

    given = type("Flags", (), dict(config="cifar10_resnet110", data_dir="", model_dir=None))()
    with pytest.raises(app.UsageError, match=r"Unexpected arguments: extra words"):
        cli.check_arguments(["train", "extra", "words"], given, ())
    with pytest.raises(app.UsageError, match=r"--data_dir is required"):
        cli.check_arguments(["train"], given, ("config", "data_dir", "model_dir"))
    cli.check_arguments(["train"], given, ("config",))
    # Each command line: a listing needs no other flag; without it the first missing flag is named.
    listed = _train("--list_tables", module="keras_preresnet.train.table")
    assert listed.returncode == 0 and "resnet_table6" in listed.stdout, listed.stderr[-2000:]
    missing = _train("--config=cifar10_resnet110", f"--data_dir={tmp_path}", module="keras_preresnet.train.evaluate")
    assert missing.returncode != 0 and "--weights is required" in missing.stderr


def test_user_errors_exit_with_a_clear_message(tmp_path, cifar_dir):
    unknown = _train("--config=cifar10_resnet111", f"--data_dir={cifar_dir}", f"--model_dir={tmp_path}")
    assert unknown.returncode != 0 and "Unknown config 'cifar10_resnet111'" in unknown.stderr
    missing = _train(*SMALL, f"--data_dir={tmp_path / 'nowhere'}", f"--model_dir={tmp_path / 'run'}")
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad_flag = _train(*SMALL, "--strategy=tpu", f"--data_dir={cifar_dir}", f"--model_dir={tmp_path}")
    assert bad_flag.returncode != 0 and "--strategy" in bad_flag.stderr and "one_device" in bad_flag.stderr
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a run folder")
    on_a_file = _train(*SMALL, f"--data_dir={cifar_dir}", f"--model_dir={a_file}")
    assert on_a_file.returncode == 1 and "Traceback" not in on_a_file.stderr
    assert f"--model_dir={str(a_file)!r} cannot be created as a folder" in on_a_file.stderr


def _checkpoint_steps(model_dir):
    folder = os.path.join(model_dir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(name[5:-6]) for name in os.listdir(folder) if name.startswith("ckpt-") and name.endswith(".index"))


def _weights(path):
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return arrays


def _assert_bit_identical(a, b):
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys() and len(first) > 20
    different = [name for name in first if not np.array_equal(first[name], second[name])]
    assert not different, f"{len(different)} of {len(first)} weight arrays differ, e.g. {different[0]}"


def _metrics(model_dir):
    with open(model_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _run_until(command, condition, extra_seconds=0.0):
    """Starts ``command`` and SIGKILLs it ``extra_seconds`` after ``condition()`` holds."""
    process = subprocess.Popen(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while not condition():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "the run did not get to the point where it is killed"
            time.sleep(0.05)
        time.sleep(extra_seconds)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()


DETERMINISTIC_RUN = [*SMALL, "--epochs=2", "--batch_size=32", "--train_examples=384", "--eval_examples=100",
                     "--checkpoint_steps=3", "--deterministic"]


def test_deterministic_run_sigkilled_twice_resumes_bit_identical_to_the_uninterrupted_run(tmp_path, cifar_dir):
    steps_per_epoch = 384 // 32
    reference = _train(*DETERMINISTIC_RUN, f"--data_dir={cifar_dir}", f"--model_dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]

    model_dir = tmp_path / "run"
    command = [sys.executable, "-m", "keras_preresnet.train", *DETERMINISTIC_RUN, f"--data_dir={cifar_dir}", f"--model_dir={model_dir}"]
    # First kill right after a mid-epoch checkpoint, the second at a moment drawn at random after the next one.
    _run_until(command, lambda: any(step % steps_per_epoch for step in _checkpoint_steps(model_dir)))
    killed_at = max(_checkpoint_steps(model_dir))
    assert killed_at < 2 * steps_per_epoch
    _run_until(command, lambda: max(_checkpoint_steps(model_dir)) > killed_at, random.Random(11).uniform(0, 1.5))

    resumed = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    restart = int(resumed.stdout.split("from step ")[1].split()[0])
    assert restart > killed_at
    assert "Epoch 2/2" in resumed.stdout and "━" in resumed.stdout  # the progress bar
    rows = _metrics(model_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2] and int(rows[-1]["step"]) == 2 * steps_per_epoch
    summary = json.loads((model_dir / "metrics.json").read_text())
    assert summary["steps"] == 2 * steps_per_epoch
    _assert_bit_identical(tmp_path / "reference" / "last.weights.h5", model_dir / "last.weights.h5")
    _assert_bit_identical(tmp_path / "reference" / "best.weights.h5", model_dir / "best.weights.h5")
    assert [r["test_loss"] for r in rows] == [r["test_loss"] for r in _metrics(tmp_path / "reference")]

    evaluated = _train("--config=cifar10_preact_resnet110", "--depth=8", f"--weights={model_dir / 'last.weights.h5'}",
                       f"--data_dir={cifar_dir}", "--examples=100", f"--output={tmp_path / 'eval.json'}",
                       f"--confusion_png={tmp_path / 'confusion.png'}", module="keras_preresnet.train.evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["images"] == 100
    assert result["top1_error"] == pytest.approx(float(rows[-1]["test_error"]), abs=1e-3)
    assert "top-5 error" in evaluated.stdout
    # Per-class results: the table on the terminal, the matrix in the JSON and as a picture.
    assert "precision" in evaluated.stdout and "airplane" in evaluated.stdout
    assert np.array(result["confusion"]).sum() == 100 and len(result["per_class"]) == 10
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_deterministic_run_killed_at_random_moments_ends_bit_identical(tmp_path, cifar_dir):
    """Five SIGKILLs at seeded random moments (start-up, steps, evaluation, file writes, checkpoints)."""
    run = [*DETERMINISTIC_RUN, f"--data_dir={cifar_dir}"]
    reference = _train(*run, f"--model_dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]
    command = [sys.executable, "-m", "keras_preresnet.train", *run, f"--model_dir={tmp_path / 'run'}"]
    rng = random.Random(5)
    for _ in range(5):
        _run_until(command, lambda: True, rng.uniform(3, 25))
    resumed = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_bit_identical(tmp_path / "reference" / "last.weights.h5", tmp_path / "run" / "last.weights.h5")
    assert [r["test_loss"] for r in _metrics(tmp_path / "run")] == [
        r["test_loss"] for r in _metrics(tmp_path / "reference")]


def test_two_deterministic_runs_with_one_seed_are_bit_identical_and_another_seed_differs(tmp_path, cifar_dir):
    run = [*SMALL, "--epochs=1", "--batch_size=32", "--train_examples=192", "--eval_examples=32", "--noprogress",
           "--deterministic", f"--data_dir={cifar_dir}"]
    for name, seed in (("first", 3), ("second", 3), ("other", 4)):
        result = _train(*run, f"--seed={seed}", f"--model_dir={tmp_path / name}")
        assert result.returncode == 0, result.stderr[-3000:]
    _assert_bit_identical(tmp_path / "first" / "last.weights.h5", tmp_path / "second" / "last.weights.h5")
    with pytest.raises(AssertionError, match="weight arrays differ"):
        _assert_bit_identical(tmp_path / "first" / "last.weights.h5", tmp_path / "other" / "last.weights.h5")


def test_evaluate_refuses_missing_weights(tmp_path, cifar_dir):
    result = _train("--config=cifar10_preact_resnet110", f"--weights={tmp_path / 'none.weights.h5'}",
                    f"--data_dir={cifar_dir}", module="keras_preresnet.train.evaluate")
    assert result.returncode == 1 and "`weights` must be None, 'imagenet' or the path" in result.stderr


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, cifar_dir):
    model_dir = tmp_path / "run"
    command = [sys.executable, "-m", "keras_preresnet.train", *SMALL, f"--data_dir={cifar_dir}", f"--model_dir={model_dir}",
               "--epochs=50", "--batch_size=32", "--train_examples=256", "--eval_examples=64", "--noprogress",
               "--checkpoint_steps=3"]
    process = subprocess.Popen(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 300
    while not _checkpoint_steps(model_dir):  # training is under way
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert "start the same command again to resume" in stderr
    saved = int(stdout.split("checkpoint saved at step ")[1].split(".")[0])
    assert saved in _checkpoint_steps(model_dir)
