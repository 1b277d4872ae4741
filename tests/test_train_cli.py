"""End to end: `python -m train` and `python -m train.evaluate` as a user runs them."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--config=cifar10_preact_resnet110", "--depth=8", "--recipe=cifar_public_code", "--lr_scaling=none"]


def _env():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CONFIG", None)
    return env


def _train(*args, module="train", timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_the_configs():
    result = _train("--help")  # absl's --help exits with status 1 after printing the usage
    for name in ("cifar10_preact_resnet1001", "cifar100_resnet164", "cifar10_resnet110_exclusive_gating_bg-6",
                 "imagenet_preact_resnet200", "--strategy", "--precision", "--init_weights"):
        assert name in result.stdout
    # Each config names the tables it is a row of.
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("cifar10_resnet110 "))
    assert "[python -m train.table --table=resnet_table6,identity_table1,identity_table2,identity_table3]" in line


def test_user_errors_exit_with_a_clear_message(tmp_path, cifar_dir):
    unknown = _train("--config=cifar10_resnet111", f"--data_dir={cifar_dir}", f"--model_dir={tmp_path}")
    assert unknown.returncode != 0 and "Unknown config 'cifar10_resnet111'" in unknown.stderr
    missing = _train(*SMALL, f"--data_dir={tmp_path / 'nowhere'}", f"--model_dir={tmp_path / 'run'}")
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad_flag = _train(*SMALL, "--strategy=tpu", f"--data_dir={cifar_dir}", f"--model_dir={tmp_path}")
    assert bad_flag.returncode != 0 and "--strategy" in bad_flag.stderr and "one_device" in bad_flag.stderr


def _checkpoint_steps(model_dir):
    folder = os.path.join(model_dir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(name[5:-6]) for name in os.listdir(folder) if name.startswith("ckpt-") and name.endswith(".index"))


def test_sigkill_mid_epoch_then_the_same_command_resumes_and_finishes(tmp_path, cifar_dir):
    model_dir = tmp_path / "run"
    command = [sys.executable, "-m", "train", *SMALL, f"--data_dir={cifar_dir}", f"--model_dir={model_dir}",
               "--epochs=2", "--batch_size=32", "--train_examples=512", "--eval_examples=200",
               "--checkpoint_steps=3"]
    steps_per_epoch = 512 // 32
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while not any(step % steps_per_epoch for step in _checkpoint_steps(model_dir)):
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no mid-epoch checkpoint appeared"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    killed_at = max(_checkpoint_steps(model_dir))
    assert killed_at < 2 * steps_per_epoch

    resumed = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    restart = int(resumed.stdout.split("from step ")[1].split()[0])
    assert restart >= killed_at and restart % steps_per_epoch
    assert "Epoch 2/2" in resumed.stdout and "━" in resumed.stdout  # the progress bar
    with open(model_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and int(rows[-1]["step"]) == 2 * steps_per_epoch
    summary = json.loads((model_dir / "metrics.json").read_text())
    assert summary["steps"] == 2 * steps_per_epoch

    evaluated = _train("--config=cifar10_preact_resnet110", "--depth=8", f"--weights={model_dir / 'last.weights.h5'}",
                       f"--data_dir={cifar_dir}", "--examples=200", f"--output={tmp_path / 'eval.json'}",
                       f"--confusion_png={tmp_path / 'confusion.png'}", module="train.evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["images"] == 200
    assert result["top1_error"] == pytest.approx(float(rows[-1]["test_error"]), abs=1e-3)
    assert "top-5 error" in evaluated.stdout
    # Per-class results: the table on the terminal, the matrix in the JSON and as a picture.
    assert "precision" in evaluated.stdout and "airplane" in evaluated.stdout
    assert np.array(result["confusion"]).sum() == 200 and len(result["per_class"]) == 10
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_refuses_missing_weights(tmp_path, cifar_dir):
    result = _train("--config=cifar10_preact_resnet110", f"--weights={tmp_path / 'none.weights.h5'}",
                    f"--data_dir={cifar_dir}", module="train.evaluate")
    assert result.returncode == 1 and "`weights` must be None, 'imagenet' or the path" in result.stderr


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, cifar_dir):
    model_dir = tmp_path / "run"
    command = [sys.executable, "-m", "train", *SMALL, f"--data_dir={cifar_dir}", f"--model_dir={model_dir}",
               "--epochs=50", "--batch_size=32", "--train_examples=256", "--eval_examples=64", "--noprogress",
               "--checkpoint_steps=3"]
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
