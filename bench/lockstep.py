"""Benchmark (not a test): the trainer's arithmetic step for step against the PyTorch reference recipe.

  python -m bench.lockstep                                  # ResNet-20, plain-20, ResNet-56; 40 steps each
  python -m bench.lockstep --rows=resnet20 --steps=20 --out=bench/results/lockstep.json

bench/fidelity.py compares whole runs, whose seeds differ between the two implementations (each draws its
own initial weights, shuffle and crops). This harness takes that out: the trainer's network
(``train.network.build_network`` of the row's config) gets the reference network's initial weights
(bench/torch_cifar.py's ``CifarResNet``, fb.resnet.torch's initialisation), all see the same augmented
batches of real CIFAR images (the reference's flip + crop, drawn once), and each takes its own training
step: ours ``trainer.compute_gradients`` (mean cross-entropy plus ``wd/2 * ||w||^2``) with
``optimizer.TorchSGD``; the reference ``torch.optim.SGD`` (weight decay in the gradient, momentum 0.9,
dampening 0, Nesterov). The learning rate drops by 10 after half the steps, so the steps after a drop are
compared too.

Two float32 implementations cannot stay bit-equal: their convolutions sum in other orders, and early
training at lr 0.1 amplifies a 1e-7 difference to percents within ten steps (the reference's own float32
and float64 runs part that fast). So the reference also runs in float64, and the measure is how far each
float32 run strays from it: ours no further than the reference's own float32 run means the two compute
the same training step. Reported per row: the logits' difference before training, each float32 run's
loss drift from the float64 run before and after the drop, their ratio, the weights' drift at the end,
and the test error of both nets on the test images.
"""

import argparse
import copy
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import fidelity  # noqa: E402  (the rows and the data folder are fidelity's)

ROWS = ("resnet20", "plain20", "resnet56")
BATCH = 128


def _keras_layers(model):
    """The model's convolutions, BatchNorms and classifier, in the order the graph builds them."""
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.Dense)
    found = []
    for layer in model.layers:  # a residual unit is one layer holding its convolutions and BNs in order
        inner = list(layer._flatten_layers(include_self=False, recursive=False))
        found += [sub for sub in inner or [layer] if isinstance(sub, kinds)]
    return found


def _torch_layers(net):
    from torch import nn

    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]


def copy_torch_weights(net, model):
    """Sets ``model``'s weights to ``net``'s (conv OIHW -> HWIO, Linear (out, in) -> (in, out))."""
    from torch import nn

    ours, theirs = _keras_layers(model), _torch_layers(net)
    if len(ours) != len(theirs):
        raise ValueError(f"the two networks differ: {len(ours)} layers against {len(theirs)}")
    for layer, module in zip(ours, theirs):
        if isinstance(module, nn.Conv2d):
            values = [module.weight.detach().numpy().transpose(2, 3, 1, 0)]
        elif isinstance(module, nn.Linear):
            values = [module.weight.detach().numpy().T, module.bias.detach().numpy()]
        else:
            values = [module.weight.detach().numpy(), module.bias.detach().numpy(),
                      module.running_mean.numpy(), module.running_var.numpy()]
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if shapes != [v.shape for v in values]:
            raise ValueError(f"{layer.name}: shapes {shapes} against the reference's {[v.shape for v in values]}")
        layer.set_weights(values)


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))


def _flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def _norm_difference(ours, theirs):
    """||ours - theirs|| / ||theirs|| over all the arrays together."""
    a, b = _flat(ours), _flat(theirs)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-12))


def _torch_weights(module):
    from torch import nn

    if isinstance(module, nn.Conv2d):
        return [module.weight.detach().numpy().transpose(2, 3, 1, 0)]
    if isinstance(module, nn.Linear):
        return [module.weight.detach().numpy().T, module.bias.detach().numpy()]
    return [module.weight.detach().numpy(), module.bias.detach().numpy()]


def weight_differences(net, model):
    """How far ``model``'s trained weights and BN running statistics are from ``net``'s: the norm of the
    difference over the norm of ``net``'s, all weights (statistics) together."""
    from torch import nn

    ours, theirs, our_statistics, their_statistics = [], [], [], []
    for layer, module in zip(_keras_layers(model), _torch_layers(net)):
        values = layer.get_weights()
        reference = _torch_weights(module)
        ours += values[:len(reference)]
        theirs += reference
        if isinstance(module, nn.BatchNorm2d):
            our_statistics += values[2:]
            their_statistics += [module.running_mean.numpy(), module.running_var.numpy()]
    return _norm_difference(ours, theirs), _norm_difference(our_statistics, their_statistics)


def run_row(row, *, steps, seed=0, data_dir=None, train_examples=None, eval_examples=1000, batch=BATCH,
            learning_rate=0.1, weight_decay=1e-4, nesterov=True, log=print):
    """Trains the row's two networks side by side for ``steps`` steps; returns the per-step record."""
    import keras
    import tensorflow as tf
    import torch
    import torch.nn.functional as F

    from bench import torch_cifar
    from keras_preresnet import defaults
    from keras_preresnet.datasets import load_cifar
    from keras_preresnet.train import configs, network, trainer
    from keras_preresnet.train.optimizer import TorchSGD

    spec = fidelity.ROWS[row]
    depth, unit = spec["torch"]
    data_dir = data_dir or fidelity.DEFAULT_DATA
    images, labels = load_cifar(data_dir, "cifar10", "train")
    test_images, test_labels = load_cifar(data_dir, "cifar10", "test")
    if train_examples:
        images, labels = images[:train_examples], labels[:train_examples]
    test_images, test_labels = test_images[:eval_examples], test_labels[:eval_examples]
    mean, std = defaults.CIFAR10_MEAN, defaults.CIFAR10_STD

    torch.manual_seed(seed)
    net = torch_cifar.CifarResNet(depth, unit)
    exact = copy.deepcopy(net).double()  # the reference in float64: what both float32 runs approximate
    keras.utils.set_random_seed(seed)
    model = network.build_network(configs.CONFIGS[spec["config"]], 10, depth=spec["depth"])
    copy_torch_weights(net, model)

    x_test = torch_cifar.normalise(test_images, mean, std)
    net.eval()
    with torch.no_grad():
        reference_logits = net(x_test[:64]).numpy()
    start_difference = _relative(keras.ops.convert_to_numpy(model(x_test[:64].numpy().transpose(0, 2, 3, 1),
                                                                  training=False)), reference_logits)

    optimizer = TorchSGD(learning_rate=learning_rate, momentum=0.9, nesterov=nesterov)
    torch_optimizers = [torch.optim.SGD(n.parameters(), lr=learning_rate, momentum=0.9, dampening=0.0,
                                        nesterov=nesterov, weight_decay=weight_decay) for n in (net, exact)]
    variables = model.trainable_variables

    @tf.function
    def keras_step(x, y):
        grads, loss, _ = trainer.compute_gradients(model, optimizer, x, y, batch, weight_decay)
        optimizer.apply(grads, variables)
        return loss

    x_train = torch_cifar.normalise(images, mean, std)
    y_train = torch.from_numpy(np.asarray(labels, np.int64))
    generator = torch.Generator().manual_seed(seed)
    drop = steps // 2
    record = {"row": row, "label": spec["label"], "steps": steps, "drop_after": drop, "batch": batch,
              "start_logits_relative_difference": start_difference, "ours_loss": [], "torch_loss": [],
              "float64_loss": [], "ours_classifier_norm": [], "torch_classifier_norm": []}
    head = model.get_layer(network.HEAD)

    def classifier_norms():  # the first steps at lr 0.1 inflate it in deep original nets (docs/training.md)
        record["ours_classifier_norm"].append(float(np.linalg.norm(keras.ops.convert_to_numpy(head.kernel))))
        record["torch_classifier_norm"].append(float(net.fc.weight.detach().norm()))

    classifier_norms()  # before training, then after every step
    order = torch.randperm(len(x_train), generator=generator)
    position = 0
    started = time.perf_counter()
    for step in range(steps):
        if position + batch > len(order):
            order, position = torch.randperm(len(x_train), generator=generator), 0
        index = order[position:position + batch]
        position += batch
        x = torch_cifar.augment(x_train[index], generator)
        y = y_train[index]
        rate = learning_rate if step < drop else learning_rate / 10
        optimizer.learning_rate.assign(rate)
        for reference, torch_optimizer, name, inputs in ((net, torch_optimizers[0], "torch_loss", x),
                                                         (exact, torch_optimizers[1], "float64_loss", x.double())):
            for group in torch_optimizer.param_groups:
                group["lr"] = rate
            reference.train()
            loss = F.cross_entropy(reference(inputs), y)
            torch_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch_optimizer.step()
            record[name].append(float(loss.item()))
        ours = float(keras_step(tf.constant(x.numpy().transpose(0, 2, 3, 1)), tf.constant(y.numpy())))
        record["ours_loss"].append(ours)
        classifier_norms()
        log(f"{row} step {step + 1}: lr {rate:g}, loss ours {ours:.5f}, reference {record['torch_loss'][-1]:.5f}, "
            f"reference in float64 {record['float64_loss'][-1]:.5f}")
    record["seconds"] = time.perf_counter() - started
    record["weights_relative_difference"], record["statistics_relative_difference"] = weight_differences(net, model)
    exact.float()
    record["ours_weights_drift"], _ = weight_differences(exact, model)
    record["torch_weights_drift"] = _norm_difference([p.detach().numpy() for p in net.parameters()],
                                                     [p.detach().numpy() for p in exact.parameters()])
    net.eval()
    with torch.no_grad():
        torch_logits = torch.cat([net(x_test[i:i + 250]) for i in range(0, len(x_test), 250)]).numpy()
    our_logits = keras.ops.convert_to_numpy(model.predict(x_test.numpy().transpose(0, 2, 3, 1), batch_size=250,
                                                          verbose=0))
    truth = np.asarray(test_labels)
    record["ours_test_error"] = float(100.0 * np.mean(our_logits.argmax(-1) != truth))
    record["torch_test_error"] = float(100.0 * np.mean(torch_logits.argmax(-1) != truth))
    record["test_prediction_agreement"] = float(100.0 * np.mean(our_logits.argmax(-1) == torch_logits.argmax(-1)))
    exact_loss = np.asarray(record["float64_loss"])
    for name in ("ours", "torch"):  # how far each float32 run strays from the float64 one
        record[f"{name}_drift"] = [float(v) for v in np.abs(np.asarray(record[f"{name}_loss"]) - exact_loss) / exact_loss]
    return record


def drift_ratio(record):
    """Mean drift of ours from the float64 reference over the mean drift of the float32 reference (from the
    second step: the first is the same computation from the same weights). About 1: ours follows the
    reference as closely as the reference's own float32 run does."""
    ours, theirs = (np.mean(record[f"{name}_drift"][1:]) for name in ("ours", "torch"))
    return float(ours / max(theirs, 1e-12))


def summary_line(record):
    drop = record["drop_after"]
    ours, theirs = record["ours_drift"], record["torch_drift"]
    return (f"| {record['label']} | {record['steps']} | {record['start_logits_relative_difference']:.1e} | "
            f"{np.mean(ours[1:drop]):.1e} / {np.mean(theirs[1:drop]):.1e} | {np.mean(ours[drop:]):.1e} / "
            f"{np.mean(theirs[drop:]):.1e} | {drift_ratio(record):.2f} | {record['ours_loss'][-1]:.4f} / "
            f"{record['torch_loss'][-1]:.4f} / {record['float64_loss'][-1]:.4f} | "
            f"{record['ours_weights_drift']:.1e} / {record['torch_weights_drift']:.1e} | "
            f"{record['ours_test_error']:.1f} / {record['torch_test_error']:.1f} | "
            f"{record['test_prediction_agreement']:.1f} | {record['ours_classifier_norm'][0]:.2f} -> "
            f"{max(record['ours_classifier_norm']):.2f} / {record['torch_classifier_norm'][0]:.2f} -> "
            f"{max(record['torch_classifier_norm']):.2f} |")


HEADER = ("| row | steps | logits before training (rel. diff.) | loss drift from float64, lr 0.1: ours / reference "
          "float32 | after the drop: ours / reference float32 | drift ratio | last loss ours / reference / float64 | "
          "weights' drift from float64 at the end: ours / reference float32 | test error % ours / reference | "
          "same test prediction % | classifier kernel norm, before training -> largest: ours / reference |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {sorted(fidelity.ROWS)}")
    parser.add_argument("--steps", type=int, default=40, help="training steps; the rate drops after half")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--train_examples", type=int, default=None)
    parser.add_argument("--out", default=None, help="a JSON file for the records (and a .md beside it)")
    options = parser.parse_args(argv)
    rows = [r for r in options.rows.split(",") if r]
    unknown = [r for r in rows if r not in fidelity.ROWS or fidelity.ROWS[r]["torch"][1] == "full_preactivation"]
    if unknown:
        parser.error(f"--rows: {unknown} not comparable step for step; choose from {list(ROWS)} or plain56")
    if options.steps < 2:
        parser.error("--steps must be at least 2 (the rate drops after half of them)")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(options.threads))
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(options.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(options.threads)
    records = [run_row(row, steps=options.steps, seed=options.seed, data_dir=options.data_dir,
                       train_examples=options.train_examples, batch=options.batch) for row in rows]
    print(HEADER)
    for record in records:
        print(summary_line(record))
    if options.out:
        meta = {"seed": options.seed, "batch": options.batch, "threads": options.threads,
                "data_dir": options.data_dir or fidelity.DEFAULT_DATA, "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        with open(options.out + ".tmp", "w") as f:
            json.dump({"meta": meta, "records": records}, f, indent=1)
        os.replace(options.out + ".tmp", options.out)
        markdown = os.path.splitext(options.out)[0] + ".md"
        with open(markdown + ".tmp", "w") as f:
            f.write("# Lockstep: the trainer's step against the PyTorch reference's, from the same weights and batches\n\n")
            f.write(f"Written by `python -m bench.lockstep` ({meta['written']}); seed {options.seed}, batch "
                    f"{options.batch}, lr 0.1 then 0.01 after half the steps, weight decay 1e-4, Nesterov; "
                    f"{options.threads} thread(s).\n\n{HEADER}\n")
            for record in records:
                f.write(summary_line(record) + "\n")
        os.replace(markdown + ".tmp", markdown)


if __name__ == "__main__":
    main()
