"""Benchmark (not a test): the trainer against a PyTorch rewrite of fb.resnet.torch's CIFAR recipe.

  python -m bench.fidelity                                   # 4 rows x short budget x seeds 0-2
  python -m bench.fidelity --budgets=1560 --out=bench/results/fidelity_long.json --figure
  python -m bench.fidelity --rows=resnet20 --budgets=8 --seeds=0 --train_examples=256   # smoke run

For each row (network), budget (iterations at batch 128) and seed it runs, one after the other:

* ours: ``python -m keras_preresnet.train --config=... --steps=BUDGET --seed=S`` as a subprocess, its
  per-epoch training loss and test error read from the run's metrics.csv, its schedule from metrics.json;
  plus a short subprocess that builds the trainer's network with the trainer's seeding and measures its
  initial loss;
* torch: bench/torch_cifar.py (the reference network, initialisation, optimiser and augmentation) as a
  subprocess, at the learning rate per step that ours reported.

Both start from the same images (the first ``--train_examples`` training images, the first
``--eval_examples`` test images); the initial loss is the mean cross-entropy in training mode before any
update on the first 512 training images, in batches of the training batch. Both run with ``--threads``
intra-op threads and one inter-op thread. images/s is training throughput without the evaluations,
counted from the second epoch on where there are two (the first holds TensorFlow's tracing).

``--paired_init`` takes the initial draw out of the comparison: the trainer starts from the reference's
initial network of the same seed (its weights copied in, bench/lockstep.py's copy, and passed as
``--init_weights``), so the two runs of a seed differ only in their data order, augmentation and
arithmetic. Such runs go to a results file of their own (the setting is part of the file's settings).

Every finished (row, budget, seed, implementation) cell is written to ``--out`` at once (atomically); a
run started again with the same ``--out`` skips the cells it holds, and resumes the cell it was in from
its last epoch (the runs of unfinished cells live in ``<out>_runs/``). The target per (row, budget):
|mean final error ours - mean final error torch| <= max(1 point, the larger std over seeds).
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CIFAR subset beside the checkout (a worktree sits one folder deeper), unless the variable names one.
DEFAULT_DATA = os.environ.get("KERAS_PRERESNET_CIFAR_DIR") or next(
    (path for path in (os.path.join(os.path.dirname(REPO), "shared", "data", "cifar-subset"),
                       os.path.join(os.path.dirname(os.path.dirname(REPO)), "shared", "data", "cifar-subset"))
     if os.path.isdir(path)), os.path.join(os.path.dirname(REPO), "shared", "data", "cifar-subset"))
RESULTS = os.path.join(REPO, "bench", "results")

# The rows: the trainer's config (with a --depth override where the config's depth is another), and the
# reference network (depth, unit) of bench/torch_cifar.py. The pre-activation CIFAR configs exist at
# ResNet-110 and deeper; --depth gives their 20 and 56 layer versions.
ROWS = {
    "resnet20": dict(config="cifar10_resnet20", depth=None, torch=(20, "original"), label="ResNet-20"),
    "resnet56": dict(config="cifar10_resnet56", depth=None, torch=(56, "original"), label="ResNet-56"),
    # The ResNet paper's ResNet-110 warm-up (Sec. 4.2: lr 0.01 for about 400 iterations) given to ResNet-56,
    # whose first steps at 0.1 blow up on this subset in both implementations; 400 iterations whatever the
    # budget (the config's own warm-up would shrink with the run).
    "resnet56_warmup": dict(config="cifar10_resnet56", depth=None, torch=(56, "original"),
                            label="ResNet-56 (400-it. warm-up)", flags=("--warmup_iterations=400",)),
    "preact_resnet20": dict(config="cifar10_preact_resnet110", depth=20, torch=(20, "full_preactivation"),
                            label="pre-act ResNet-20"),
    "preact_resnet56": dict(config="cifar10_preact_resnet110", depth=56, torch=(56, "full_preactivation"),
                            label="pre-act ResNet-56"),
    "plain20": dict(config="cifar10_plain20", depth=None, torch=(20, "plain"), label="plain-20"),
    "plain56": dict(config="cifar10_plain56", depth=None, torch=(56, "plain"), label="plain-56"),
}
FIDELITY_ROWS = ("resnet20", "resnet56", "preact_resnet20", "preact_resnet56")
IMPLEMENTATIONS = ("ours", "torch")
SHORT_BUDGET, LONG_BUDGET = 390, 1560
# Every row trains with the ResNet paper's CIFAR schedule (lr 0.1 at batch 128, /10 at 50% and 75% of the
# run), which the pre-act ResNet-110 config would otherwise replace by its warm-up recipe.
RECIPE = "cifar_paper"
BATCH = 128
INITIAL_LOSS_IMAGES = 512
TARGET_POINTS = 1.0


# ---------------------------------------------------------------------------------------------- cells


def cell_key(row, budget, seed, implementation):
    return f"{row}|{budget}|{seed}|{implementation}"


def load_results(path, meta):
    """The results file at ``path`` (or a new one); its settings must be ``meta``'s to add cells to it."""
    if not os.path.exists(path):
        return {"meta": meta, "cells": {}}
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    different = {k: (results["meta"].get(k), v) for k, v in meta.items() if results["meta"].get(k) != v}
    if different:
        raise SystemExit(f"fidelity: {path} was written with other settings {different} (stored, asked); "
                         "use another --out or the same settings.")
    return results


def save_results(path, results):
    """Writes to a temporary file and renames it into place: an interrupted run keeps every finished cell."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".fidelity-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def thread_env(threads):
    """Environment of a child: ``threads`` intra-op threads, one inter-op thread, for TF and PyTorch."""
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1",
               OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(command, threads, log_path):
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call(command, cwd=REPO, env=thread_env(threads), stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code != 0:
        with open(log_path, encoding="utf-8") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(command[:4])} ... failed with exit code {code}; log {log_path}:\n{tail}")
    return seconds


def _worker(kind, spec, threads, work_dir):
    """Runs ``python -m bench.fidelity --worker=kind`` on ``spec``; returns its JSON answer."""
    spec_path, answer_path = os.path.join(work_dir, f"{kind}_spec.json"), os.path.join(work_dir, f"{kind}.json")
    with open(spec_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    seconds = _run([sys.executable, "-m", "bench.fidelity", f"--worker={kind}", f"--spec={spec_path}",
                    f"--answer={answer_path}"], threads, os.path.join(work_dir, f"{kind}.log"))
    with open(answer_path, encoding="utf-8") as f:
        answer = json.load(f)
    answer["process_seconds"] = seconds
    return answer


def steady_images_per_second(rows):
    """Training images/s from the second epoch on (all epochs when there is one)."""
    counted = rows[1:] if len(rows) > 1 else rows
    images = sum(r["images_per_second"] * r["epoch_seconds"] for r in counted)
    seconds = sum(r["epoch_seconds"] for r in counted)
    return images / seconds if seconds else None


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: int(v) if k in ("epoch", "step") else float(v) for k, v in row.items()}
                for row in csv.DictReader(f)]


def ours_command(row, budget, seed, options, model_dir, init_weights=None):
    spec = ROWS[row]
    command = [sys.executable, "-m", "keras_preresnet.train", f"--config={spec['config']}",
               f"--data_dir={options.data_dir}", f"--model_dir={model_dir}", f"--steps={budget}",
               f"--seed={seed}", f"--batch_size={BATCH}", "--noprogress"]
    if options.recipe:
        command.append(f"--recipe={options.recipe}")
    if spec["depth"] is not None:
        command.append(f"--depth={spec['depth']}")
    command += spec.get("flags", ())
    if options.nesterov is not None:
        command.append("--nesterov" if options.nesterov else "--nonesterov")
    if init_weights:
        command.append(f"--init_weights={init_weights}")
    for name in ("train_examples", "eval_examples"):
        if getattr(options, name):
            command.append(f"--{name}={getattr(options, name)}")
    return command


def run_ours(row, budget, seed, options, work_dir, initial_loss=True):
    """Trains ``row`` with the trainer; returns the cell (per-epoch rows, schedule, figures)."""
    model_dir = os.path.join(work_dir, "run")
    paired, init_weights = None, None
    if getattr(options, "paired_init", False):
        # The reference's initial network of this seed, as a weights file the trainer starts from.
        init_weights = os.path.join(work_dir, "initial.weights.h5")
        paired = _worker("paired_initial", dict(_initial_spec(row, seed, options), weights=init_weights),
                         options.threads, work_dir)
    command = ours_command(row, budget, seed, options, model_dir, init_weights=init_weights)
    seconds = _run(command, options.threads, os.path.join(work_dir, "train.log"))
    with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
        summary = json.load(f)
    with open(os.path.join(model_dir, "run.json"), encoding="utf-8") as f:
        run = json.load(f)
    rows = _read_csv(os.path.join(model_dir, "metrics.csv"))
    cell = {
        "command": " ".join(command[1:]),
        "rows": rows,
        "final_test_error": summary["final_test_error"],
        "images_per_second": steady_images_per_second(rows),
        "images_per_second_all_epochs": summary["images_per_second"],
        "schedule": {"steps_per_epoch": run["steps_per_epoch"], "total_steps": run["total_steps"],
                     "lr_boundaries": summary["lr_boundaries"], "learning_rates": summary["learning_rates"]},
        "weight_decay": summary["weight_decay"],
        "process_seconds": seconds,
    }
    # A paired run's initial network is the one its worker wrote; otherwise the trainer's own draw.
    answer = paired or (initial_loss and _worker("ours_initial", _initial_spec(row, seed, options),
                                                 options.threads, work_dir))
    if answer:
        cell.update(initial_loss=answer["initial_loss"], params=answer["params"])
        cell["process_seconds"] += answer["process_seconds"]
    if paired:
        cell["paired_init"] = True
    return cell


def _initial_spec(row, seed, options):
    images = min(INITIAL_LOSS_IMAGES, options.train_examples or INITIAL_LOSS_IMAGES)
    return dict(row=row, config=ROWS[row]["config"], depth=ROWS[row]["depth"], seed=seed,
                data_dir=options.data_dir, images=images, batch=BATCH)


def run_torch(row, seed, schedule, options, work_dir):
    depth, unit = ROWS[row]["torch"]
    spec = dict(_initial_spec(row, seed, options), torch_depth=depth, unit=unit, schedule=schedule,
                nesterov=True if options.nesterov is None else options.nesterov, threads=options.threads,
                train_examples=options.train_examples, eval_examples=options.eval_examples,
                checkpoint=os.path.join(work_dir, "torch_checkpoint.pt"))
    answer = _worker("torch", spec, options.threads, work_dir)
    answer["images_per_second"] = steady_images_per_second(answer["rows"])
    return answer


def run_cells(options, rows, results, out, log=print):
    """Runs every missing (row, budget, seed, implementation) cell, ours before torch, saving after each;
    returns the keys of the cells that failed."""
    failed = []
    for budget in options.budgets:
        for seed in options.seeds:
            for row in rows:
                for implementation in IMPLEMENTATIONS if options.torch else ("ours",):
                    key = cell_key(row, budget, seed, implementation)
                    if key in results["cells"]:
                        continue
                    log(f"fidelity: {key} ...")
                    # A folder that outlives an interruption: the trainer resumes from its checkpoint and the
                    # PyTorch loop from its last epoch when the same command starts again.
                    work_dir = os.path.join(os.path.splitext(out)[0] + "_runs", key.replace("|", "_"))
                    os.makedirs(work_dir, exist_ok=True)
                    started = time.perf_counter()
                    try:
                        if implementation == "ours":
                            cell = run_ours(row, budget, seed, options, work_dir, initial_loss=options.torch)
                        else:
                            ours = results["cells"].get(cell_key(row, budget, seed, "ours"))
                            if ours is None:
                                raise RuntimeError("its trainer run failed, so there is no schedule to follow")
                            cell = run_torch(row, seed, schedule=ours["schedule"], options=options,
                                             work_dir=work_dir)
                    except RuntimeError as error:
                        # One failed run (a diverged net, say) must not end an hours-long sweep; it is left
                        # out of the file, so the next start of the command tries it again.
                        log(f"fidelity: {key} FAILED: {error}")
                        failed.append(key)
                        continue
                    cell["cell_seconds"] = time.perf_counter() - started
                    results["cells"][key] = cell
                    save_results(out, results)
                    shutil.rmtree(work_dir, ignore_errors=True)
                    log(f"fidelity: {key}: final test error {cell['final_test_error']:.2f}%, initial loss "
                        f"{cell.get('initial_loss', float('nan')):.4f}, {cell['images_per_second']:.1f} images/s, "
                        f"{cell['cell_seconds']:.0f} s")
    return failed


# -------------------------------------------------------------------------------------------- summary


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(results, rows, budgets, seeds):
    """Per (row, budget): mean and std of the final errors of each implementation, the target check and
    the images/s ratio ours / torch."""
    lines = []
    for budget in budgets:
        for row in rows:
            cells = {impl: [results["cells"].get(cell_key(row, budget, s, impl)) for s in seeds]
                     for impl in IMPLEMENTATIONS}
            cells = {impl: [c for c in found if c] for impl, found in cells.items()}
            if not cells["ours"]:
                continue
            line = {"row": row, "budget": budget, "seeds": len(cells["ours"])}
            for impl, found in cells.items():
                mean, std = _mean_std([c["final_test_error"] for c in found])
                line[impl] = {"final_error_mean": mean, "final_error_std": std, "runs": len(found),
                              "initial_loss_mean": _mean_std([c.get("initial_loss") for c in found])[0],
                              "images_per_second": _mean_std([c["images_per_second"] for c in found])[0]}
            ours, peer = line["ours"], line["torch"]
            both = [(cell_key(row, budget, s, "ours"), cell_key(row, budget, s, "torch")) for s in seeds]
            differences = [results["cells"][a]["final_test_error"] - results["cells"][b]["final_test_error"]
                           for a, b in both if a in results["cells"] and b in results["cells"]]
            if differences:  # seed by seed: what a paired design (--paired_init) compares
                line["seed_differences"] = differences
            if peer["runs"]:
                delta = abs(ours["final_error_mean"] - peer["final_error_mean"])
                allowed = max(TARGET_POINTS, ours["final_error_std"], peer["final_error_std"])
                line.update(delta=delta, allowed=allowed, target_met=delta <= allowed,
                            speed_ratio=ours["images_per_second"] / peer["images_per_second"])
            lines.append(line)
    return lines


def _fmt(mean, std):
    return "-" if mean is None else f"{mean:.2f} ± {std:.2f}"


def table(lines):
    header = ("| row | budget | seeds | ours final error % | torch final error % | abs(delta) | allowed | target "
              "| initial loss ours / torch | images/s ours / torch | ratio |")
    out = [header, "|" + "---|" * (header.count("|") - 1)]
    for line in lines:
        ours, peer = line["ours"], line["torch"]
        has_peer = "delta" in line
        out.append("| " + " | ".join([
            ROWS[line["row"]]["label"], str(line["budget"]), str(line["seeds"]),
            _fmt(ours["final_error_mean"], ours["final_error_std"]),
            _fmt(peer["final_error_mean"], peer["final_error_std"]),
            f"{line['delta']:.2f}" if has_peer else "-", f"{line['allowed']:.2f}" if has_peer else "-",
            ("met" if line["target_met"] else "MISSED") if has_peer else "-",
            f"{_num(ours['initial_loss_mean'], 3)} / {_num(peer['initial_loss_mean'], 3)}",
            f"{_num(ours['images_per_second'], 0)} / {_num(peer['images_per_second'], 0)}",
            f"{line['speed_ratio']:.2f}" if has_peer else "-",
        ]) + " |")
    return "\n".join(out)


def _num(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def write_markdown(path, results, lines):
    meta = results["meta"]
    text = [
        "# Fidelity: keras_preresnet.train against the PyTorch rewrite of fb.resnet.torch's CIFAR recipe",
        "",
        f"Written by `python -m bench.fidelity` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). "
        f"Data: {meta['train_examples'] or 'all'} training / {meta['eval_examples'] or 'all'} test images of "
        f"`{meta['data_dir']}`; batch {BATCH}; recipe {meta['recipe']} compressed to the budget; Nesterov "
        f"{meta['nesterov']}; {meta['threads']} intra-op thread(s) each. Final error: test error after the "
        f"last step, mean ± std over seeds. Target: abs(delta) <= max({TARGET_POINTS:g} point, larger std).",
        "",
        table(lines),
        "",
    ]
    if meta.get("paired_init"):
        text += ["Paired initialisation (`--paired_init`): each seed's trainer run starts from the reference's "
                 "initial network of that seed; the runs of a seed differ in data order, augmentation and "
                 "arithmetic only. Final test error ours - reference, seed by seed:", ""]
        for line in lines:
            found = line.get("seed_differences", [])
            if found:
                mean, std = _mean_std(found)
                text.append(f"* {ROWS[line['row']]['label']}, {line['budget']} iterations: "
                            f"{', '.join(f'{d:+.1f}' for d in found)} (mean {mean:+.2f} ± {std:.2f}, "
                            f"{len(found)} seeds)")
        text.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(text))


def write_figure(path, results, rows, budgets, seeds, metric="train_loss"):
    """Per-epoch ``metric`` of both implementations per (row, budget): mean over seeds, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(row, budget) for budget in budgets for row in rows
              if any(cell_key(row, budget, s, "ours") in results["cells"] for s in seeds)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (row, budget) in zip(axes[0], panels):
        for impl, colour in zip(IMPLEMENTATIONS, ("tab:blue", "tab:orange")):
            curves = [results["cells"][k]["rows"] for k in (cell_key(row, budget, s, impl) for s in seeds)
                      if k in results["cells"]]
            if not curves:
                continue
            epochs = min(len(c) for c in curves)
            x = [curves[0][i]["epoch"] for i in range(epochs)]
            values = [[c[i][metric] for c in curves] for i in range(epochs)]
            initial = [results["cells"][k].get("initial_loss") for k in (cell_key(row, budget, s, impl) for s in seeds)
                       if k in results["cells"]]
            if metric == "train_loss" and None not in initial:  # epoch 0: the loss before any update
                x, values = [0] + x, [initial] + values
            ax.plot(x, [statistics.fmean(v) for v in values], color=colour,
                    label=f"{'keras_preresnet' if impl == 'ours' else 'PyTorch reference'} ({len(curves)} seeds)")
            ax.fill_between(x, [min(v) for v in values], [max(v) for v in values], color=colour, alpha=0.2)
        ax.set_title(f"{ROWS[row]['label']}, {budget} iterations")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------------- workers


def _load_images(spec):
    from keras_preresnet.datasets import DATASETS, load_cifar

    train = load_cifar(spec["data_dir"], "cifar10", "train")
    test = load_cifar(spec["data_dir"], "cifar10", "test")
    n_train, n_eval = spec.get("train_examples"), spec.get("eval_examples")
    train = tuple(a[:n_train] for a in train) if n_train else train
    test = tuple(a[:n_eval] for a in test) if n_eval else test
    initial = tuple(a[:spec["images"]] for a in train)
    info = DATASETS["cifar10"]
    return train, test, initial, info.mean, info.std


def initial_network(config, depth, seed):
    """The trainer's network of ``config`` (``depth`` overriding), built with the trainer's seeding."""
    from keras_preresnet.train import configs, network, trainer

    trainer.seed_everything(seed, False)
    return network.build_network(configs.get_config(config), 10, depth=depth)


def initial_loss(model, x, labels, batch):
    """Mean cross-entropy of ``model`` in training mode (batch statistics) over ``x`` in batches of ``batch``."""
    import keras

    total = 0.0
    for start in range(0, len(x), batch):
        logits = model(x[start:start + batch], training=True)
        total += float(keras.ops.sum(keras.losses.sparse_categorical_crossentropy(
            labels[start:start + batch], logits, from_logits=True)))
    return total / len(x)


def _initial_answer(model, spec):
    """The initial loss of ``model`` on ``spec``'s images and its trainable parameter count."""
    import numpy as np

    _, _, (images, labels), mean, std = _load_images(spec)
    x = (images.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {"initial_loss": initial_loss(model, x, labels, spec["batch"]), "params": trainable}


def worker_ours_initial(spec):
    """The initial loss of the trainer's network, built with the trainer's seeding and builder."""
    return _initial_answer(initial_network(spec["config"], spec["depth"], spec["seed"]), spec)


def worker_paired_initial(spec):
    """Writes the reference's initial network of ``spec``'s seed, copied into the trainer's network, to
    ``spec["weights"]``; returns its initial loss (measured after the file is written: a forward pass in
    training mode moves the BatchNorms' running statistics)."""
    import torch

    from bench import lockstep, torch_cifar

    torch.manual_seed(spec["seed"])  # as torch_cifar.train seeds before it builds the network
    net = torch_cifar.CifarResNet(*ROWS[spec["row"]]["torch"])
    model = initial_network(spec["config"], spec["depth"], spec["seed"])
    lockstep.copy_torch_weights(net, model)
    model.save_weights(spec["weights"])
    return _initial_answer(model, spec)


def worker_torch(spec):
    import torch

    torch.set_num_interop_threads(1)  # as TensorFlow's TF_NUM_INTEROP_THREADS; once, before any torch work
    from bench import torch_cifar

    train, test, initial, mean, std = _load_images(spec)
    schedule = spec["schedule"]
    return torch_cifar.train(
        depth=spec["torch_depth"], unit=spec["unit"], seed=spec["seed"], train_data=train, test_data=test,
        initial_data=initial, mean=mean, std=std, batch=spec["batch"],
        steps_per_epoch=schedule["steps_per_epoch"], total_steps=schedule["total_steps"],
        lr_boundaries=schedule["lr_boundaries"], learning_rates=schedule["learning_rates"],
        nesterov=spec["nesterov"], threads=spec["threads"], log=lambda text: print(text, flush=True),
        checkpoint=spec.get("checkpoint"),
    )


WORKERS = {"ours_initial": worker_ours_initial, "paired_initial": worker_paired_initial, "torch": worker_torch}


# ----------------------------------------------------------------------------------------- command line


def _int_list(text):
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, received {text!r}")


def _row_list(text):
    rows = [v for v in text.split(",") if v]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    return rows


def _bool(text):
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, received {text!r}")


def add_run_arguments(parser, default_rows):
    parser.add_argument("--rows", type=_row_list, default=list(default_rows),
                        help=f"comma-separated rows of {', '.join(ROWS)}")
    parser.add_argument("--budgets", "--budget_iterations", type=_int_list, default=[SHORT_BUDGET],
                        help=f"training iterations at batch {BATCH} (short {SHORT_BUDGET}, long {LONG_BUDGET})")
    parser.add_argument("--seeds", type=_int_list, default=[0, 1, 2])
    parser.add_argument("--data_dir", default=DEFAULT_DATA)
    parser.add_argument("--train_examples", type=int, default=None, help="use the first N training images")
    parser.add_argument("--eval_examples", type=int, default=None, help="use the first N test images")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of each run (both); on a shared machine more than one thread "
                             "makes PyTorch's OpenMP barriers spin against other work")
    parser.add_argument("--figure", action="store_true", help="also write a PNG next to --out")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, FIDELITY_ROWS)
    parser.add_argument("--nesterov", type=_bool, default=True,
                        help="Nesterov momentum for both (fb.resnet.torch's train.lua: true)")
    parser.add_argument("--paired_init", type=_bool, default=False,
                        help="start the trainer from the reference's initial network of each seed")
    parser.add_argument("--out", default=os.path.join(RESULTS, "fidelity.json"), help="results JSON (resumed)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--answer", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        with open(options.spec, encoding="utf-8") as f:
            answer = WORKERS[options.worker](json.load(f))
        with open(options.answer, "w", encoding="utf-8") as f:
            json.dump(answer, f)
        return 0
    if not os.path.isdir(options.data_dir):
        parser.error(f"--data_dir {options.data_dir!r} is not a folder; point it at the CIFAR-10 python batches.")
    options.recipe, options.torch = RECIPE, True
    out = os.path.abspath(options.out)
    results = load_results(out, run_meta(options))
    failed = run_cells(options, options.rows, results, out)
    lines = summarise(results, options.rows, options.budgets, options.seeds)
    results["summary"] = lines
    save_results(out, results)
    print(table(lines))
    markdown = os.path.splitext(out)[0] + ".md"
    write_markdown(markdown, results, lines)
    print(f"fidelity: wrote {out} and {markdown}")
    if options.figure:
        figure = write_figure(os.path.splitext(out)[0] + ".png", results, options.rows, options.budgets,
                              options.seeds)
        print(f"fidelity: wrote {figure}")
    if failed:
        print(f"fidelity: {len(failed)} cell(s) failed ({', '.join(failed)}); their logs are in "
              f"{os.path.splitext(out)[0]}_runs/; start the same command again to retry them.")
        return 1
    return 0


def run_meta(options):
    """The settings every cell of one results file shares."""
    meta = {"data_dir": os.path.abspath(options.data_dir), "train_examples": options.train_examples,
            "eval_examples": options.eval_examples, "threads": options.threads, "recipe": options.recipe,
            "nesterov": options.nesterov, "batch": BATCH}
    if getattr(options, "paired_init", False):  # only when set: files of unpaired runs keep their settings
        meta["paired_init"] = True
    return meta


if __name__ == "__main__":
    sys.exit(main())
