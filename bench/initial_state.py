"""Benchmark (not a test): the state both implementations start training from, over many seeds.

  python -m bench.initial_state                              # 4 fidelity rows + ResNet-110, 20 seeds each
  python -m bench.initial_state --rows=resnet20 --seeds=10 --out=bench/results/initial_state.json

bench/fidelity.py measures one initial loss per seed, and a few seeds cannot tell an initialisation that
differs from one seed's luck. This harness draws the trainer's network (``train.network.build_network``
with the trainer's seeding) and the reference's (bench/torch_cifar.py, fb.resnet.torch's initialisation)
for ``--seeds`` seeds each and measures, in training mode (batch statistics) on the first training
images:

* the initial loss: mean cross-entropy over ``--images`` images in batches of 128 (fidelity's measure);
* on the first batch: the mean of the pooled features the classifier sees, the largest class
  probability averaged over the batch (how far the start is from a uniform guess), and the norm of the
  classifier kernel's gradient, which sets the size of the first SGD steps on the classifier.

Per row it prints mean ± std over seeds of each and Welch's t of ours against the reference: |t| well
below 2 on every measure says the two draw their initial networks from the same distribution.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import fidelity  # noqa: E402  (the rows and the data folder are fidelity's)

ROWS = ("resnet20", "resnet56", "resnet110", "preact_resnet20", "preact_resnet56")
EXTRA_ROWS = {"resnet110": dict(config="cifar10_resnet110", depth=None, torch=(110, "original"), label="ResNet-110")}
MEASURES = ("initial_loss", "feature_mean", "largest_mean_probability", "classifier_gradient_norm")
BATCH = 128


def row_spec(row):
    return fidelity.ROWS[row] if row in fidelity.ROWS else EXTRA_ROWS[row]


def _torch_state(depth, unit, seed, x, y):
    import torch
    import torch.nn.functional as F

    from bench import torch_cifar

    torch.manual_seed(seed)
    net = torch_cifar.CifarResNet(depth, unit)
    loss = torch_cifar.initial_loss(net, x, y, BATCH)  # restores the BN statistics it moved
    net.train()
    features = torch.flatten(F.adaptive_avg_pool2d(net.features(x[:BATCH]), 1), 1)
    logits = net.fc(features)
    net.zero_grad()
    F.cross_entropy(logits, y[:BATCH]).backward()
    return {"initial_loss": loss, "feature_mean": features.mean().item(),
            "largest_mean_probability": logits.detach().softmax(1).mean(0).max().item(),
            "classifier_gradient_norm": float(net.fc.weight.grad.norm())}


def _keras_state(spec, seed, x, y):
    import keras
    import tensorflow as tf

    from keras_preresnet.train import network

    model = fidelity.initial_network(spec["config"], spec["depth"], seed)
    mean_loss = fidelity.initial_loss(model, x, y, BATCH)
    # The training calls above moved the BN statistics; the first batch's features use batch statistics
    # (training mode), which do not depend on them.
    head = model.get_layer(network.HEAD)
    features_model = keras.Model(model.input, head.input)
    features = features_model(x[:BATCH], training=True)
    with tf.GradientTape() as tape:
        logits = head(features)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y[:BATCH], logits, from_logits=True))
    gradient = tape.gradient(loss, head.kernel)
    return {"initial_loss": mean_loss, "feature_mean": float(tf.reduce_mean(features)),
            "largest_mean_probability": float(tf.reduce_max(tf.reduce_mean(tf.nn.softmax(logits), 0))),
            "classifier_gradient_norm": float(tf.norm(gradient))}


def measure_row(row, seeds, *, data_dir=None, images=fidelity.INITIAL_LOSS_IMAGES, log=print):
    """Both implementations' initial state of ``row`` for each of ``seeds``: {"ours": [...], "torch": [...]}."""
    import torch

    from bench import torch_cifar
    from keras_preresnet.datasets import DATASETS, load_cifar

    spec = row_spec(row)
    depth, unit = spec["torch"]
    train_images, train_labels = load_cifar(data_dir or fidelity.DEFAULT_DATA, "cifar10", "train")
    info = DATASETS["cifar10"]
    x_torch = torch_cifar.normalise(train_images[:images], info.mean, info.std)
    y = np.asarray(train_labels[:images], np.int64)
    x_ours = np.ascontiguousarray(x_torch.numpy().transpose(0, 2, 3, 1))
    states = {"ours": [], "torch": []}
    for seed in seeds:
        states["torch"].append(_torch_state(depth, unit, seed, x_torch, torch.from_numpy(y)))
        states["ours"].append(_keras_state(spec, seed, x_ours, y))
        log(f"{row} seed {seed}: " + ", ".join(
            f"{name} {states['ours'][-1][name]:.3f} / {states['torch'][-1][name]:.3f}" for name in MEASURES))
    return states


def welch_t(a, b):
    """Welch's t statistic of the means of ``a`` and ``b`` (0 when both are constant and equal)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    spread = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    difference = a.mean() - b.mean()
    return float(difference / spread) if spread > 0 else (0.0 if difference == 0 else math.copysign(math.inf, difference))


def summarise(row, states):
    """Per measure: mean and std of each implementation and Welch's t (ours - reference)."""
    summary = {"row": row, "label": row_spec(row)["label"], "seeds": len(states["ours"])}
    for name in MEASURES:
        ours = [s[name] for s in states["ours"]]
        theirs = [s[name] for s in states["torch"]]
        summary[name] = {"ours": [float(np.mean(ours)), float(np.std(ours, ddof=1))],
                         "torch": [float(np.mean(theirs)), float(np.std(theirs, ddof=1))],
                         "welch_t": welch_t(ours, theirs)}
    return summary


HEADER = ("| row | seeds | " + " | ".join(f"{n.replace('_', ' ')}: ours / reference (t)" for n in MEASURES)
          + " |\n|---|---|" + "---|" * len(MEASURES))


def summary_line(summary):
    cells = []
    for name in MEASURES:
        entry = summary[name]
        cells.append(f"{entry['ours'][0]:.3f} ± {entry['ours'][1]:.3f} / {entry['torch'][0]:.3f} ± "
                     f"{entry['torch'][1]:.3f} ({entry['welch_t']:+.1f})")
    return f"| {summary['label']} | {summary['seeds']} | " + " | ".join(cells) + " |"


def write(out, meta, summaries, states):
    """The JSON (every seed's figures) and a markdown table beside it, each written atomically."""
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "summaries": summaries, "states": states}, f, indent=1)
    os.replace(out + ".tmp", out)
    markdown = os.path.splitext(out)[0] + ".md"
    with open(markdown + ".tmp", "w", encoding="utf-8") as f:
        f.write("# The initial state of the trainer's networks against the PyTorch reference's, over seeds\n\n"
                f"Written by `python -m bench.initial_state` ({meta['written']}); training mode, first "
                f"{meta['images']} training images of `{meta['data_dir']}` (loss) and the first batch of "
                f"{BATCH} (the rest); mean ± std over seeds; t: Welch's t of ours against the reference.\n\n"
                f"{HEADER}\n")
        for summary in summaries:
            f.write(summary_line(summary) + "\n")
    os.replace(markdown + ".tmp", markdown)
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    known = sorted(set(fidelity.ROWS) | set(EXTRA_ROWS))
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {known}")
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 for each implementation")
    parser.add_argument("--images", type=int, default=fidelity.INITIAL_LOSS_IMAGES,
                        help=f"training images the initial loss averages over (at least {BATCH})")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--out", default=None, help="a JSON file for the figures (and a .md beside it)")
    options = parser.parse_args(argv)
    rows = [r for r in options.rows.split(",") if r]
    unknown = [r for r in rows if r not in known]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; choose from {known}")
    if options.seeds < 2:
        parser.error("--seeds must be at least 2 (a spread needs two)")
    if options.images < BATCH:
        parser.error(f"--images must be at least {BATCH} (one batch)")
    data_dir = options.data_dir or fidelity.DEFAULT_DATA
    if not os.path.isdir(data_dir):
        parser.error(f"--data_dir {data_dir!r} is not a folder; point it at the CIFAR-10 python batches.")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(options.threads))
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(options.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(options.threads)
    states, summaries = {}, []
    for row in rows:
        states[row] = measure_row(row, range(options.seeds), data_dir=data_dir, images=options.images)
        summaries.append(summarise(row, states[row]))
    print(HEADER)
    for summary in summaries:
        print(summary_line(summary))
    if options.out:
        meta = {"seeds": options.seeds, "images": options.images, "threads": options.threads,
                "data_dir": data_dir, "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(f"initial_state: wrote {options.out} and {write(options.out, meta, summaries, states)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
