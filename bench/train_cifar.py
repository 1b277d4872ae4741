"""Benchmark (not a test): trains a pre-activation ResNet on the CIFAR-10 subset through the command line
and reports test accuracy, wall time and training images/s.

  python bench/train_cifar.py                      # pre-act ResNet-20, 10 epochs, batch 128
  python bench/train_cifar.py --depth=164 --epochs=2

The run uses `python -m keras_preresnet.train` exactly as a user would (config cifar10_preact_resnet110 with --depth,
the public code's schedule compressed to --epochs, no LR scaling) and writes its figures to
bench/results/train_cifar_preact<depth>.json, with the run's metrics.csv and curves.png beside it.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get("KERAS_PRERESNET_CIFAR_DIR",
                              os.path.join(os.path.dirname(REPO), "shared", "data", "cifar-subset"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA)
    parser.add_argument("--depth", type=int, default=20, help="pre-act ResNet depth, 6n+2 (basic) or 9n+2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--extra", nargs="*", default=[], help="more flags for python -m keras_preresnet.train")
    parser.add_argument("--results", default=os.path.join(REPO, "bench", "results"))
    args = parser.parse_args()

    model_dir = tempfile.mkdtemp(prefix="bench_train_cifar_")
    config = "cifar10_preact_resnet164" if args.depth >= 164 and (args.depth - 2) % 9 == 0 else "cifar10_preact_resnet110"
    command = [sys.executable, "-m", "keras_preresnet.train", f"--config={config}", f"--depth={args.depth}",
               f"--data_dir={args.data_dir}", f"--model_dir={model_dir}", f"--epochs={args.epochs}",
               f"--batch_size={args.batch_size}", "--recipe=cifar_public_code", "--lr_scaling=none",
               "--noprogress", *args.extra]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(" ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, cwd=REPO, env=env, check=True)
    wall = time.time() - started

    with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
        summary = json.load(f)
    result = {
        "model": f"pre-act ResNet-{args.depth} ({config} --depth={args.depth})",
        "data": f"CIFAR-10 subset: {summary['train_examples']} train / {summary['test_examples']} test images",
        "epochs": summary["epochs"],
        "steps": summary["steps"],
        "global_batch": summary["global_batch"],
        "final_test_accuracy": round(100 - summary["final_test_error"], 2),
        "best_test_accuracy": round(100 - summary["best_test_error"], 2),
        "wall_seconds": round(wall, 1),
        "train_seconds": round(summary["train_seconds"], 1),
        "train_images_per_second": round(summary["images_per_second"], 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "command": " ".join(["python", "-m", "keras_preresnet.train"] + command[3:]),
    }
    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, f"train_cifar_preact{args.depth}")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    shutil.copy(os.path.join(model_dir, "metrics.csv"), stem + "_metrics.csv")
    shutil.copy(os.path.join(model_dir, "curves.png"), stem + "_curves.png")
    shutil.rmtree(model_dir)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
