"""Benchmark (not a test): one CIFAR training step of the trainer against the PyTorch reference's, per image.

  python -m bench.train_step                      # ResNet-20, batch 128, 1 thread
  python -m bench.train_step --depth=56 --threads=2 --steps=20

Times the step alone, from tensors already in memory, so the input pipeline and the evaluations are out:
ours is ``trainer.compute_gradients`` + ``TorchSGD.apply`` in one ``tf.function`` (what ``python -m
keras_preresnet.train`` runs per step), in its variants (``--variants``: ``keras`` the trainer's network
as built, ``xla`` the same compiled with XLA); the peer is bench/torch_cifar.py's network and
``torch.optim.SGD`` (channels-last, oneDNN). The variants and the peer alternate, ``--rounds`` times,
and each reports its median images/s; the ratio is ours over the peer.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

VARIANTS = ("keras", "xla")


def keras_step(depth, batch, jit_compile):
    import keras
    import tensorflow as tf

    from keras_preresnet.train import configs, network, trainer
    from keras_preresnet.train.optimizer import TorchSGD

    keras.utils.set_random_seed(0)
    model = network.build_network(configs.CONFIGS["cifar10_resnet20"], 10, depth=depth)
    optimizer = TorchSGD(0.01, momentum=0.9, nesterov=True)
    variables = model.trainable_variables
    compute = tf.function(lambda x, y: trainer.compute_gradients(model, optimizer, x, y, batch, 1e-4),
                          jit_compile=jit_compile)

    @tf.function
    def step(x, y):
        grads, loss, _ = compute(x, y)
        optimizer.apply(grads, variables)
        return loss

    rng = np.random.RandomState(0)
    x = tf.constant(rng.randn(batch, 32, 32, 3).astype("float32"))
    y = tf.constant(rng.randint(0, 10, batch).astype("int64"))
    return lambda: float(step(x, y))


def torch_step(depth, batch):
    import torch
    import torch.nn.functional as F

    from bench import torch_cifar

    torch.manual_seed(0)
    net = torch_cifar.CifarResNet(depth, "original").to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    net.train()

    def step():
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def images_per_second(step, steps, batch):
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    options = parser.parse_args(argv)
    variants = [v for v in options.variants.split(",") if v]
    if any(v not in VARIANTS for v in variants):
        parser.error(f"--variants: choose from {VARIANTS}")
    os.environ["OMP_NUM_THREADS"] = str(options.threads)
    import tensorflow as tf
    import torch

    try:
        tf.config.threading.set_intra_op_parallelism_threads(options.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started in this process (a test): its thread counts stay
        print(f"note: TensorFlow was started before this benchmark; it keeps its threads, not --threads={options.threads}")
    torch.set_num_threads(options.threads)
    steps = {"torch": torch_step(options.depth, options.batch)}
    for variant in variants:
        steps[variant] = keras_step(options.depth, options.batch, jit_compile=variant == "xla")
    for step in steps.values():  # tracing, compilation and oneDNN's first calls
        step(), step()
    timings = {name: [] for name in steps}
    for _ in range(options.rounds):
        for name, step in steps.items():
            timings[name].append(images_per_second(step, options.steps, options.batch))
    peer = statistics.median(timings["torch"])
    print(f"ResNet-{options.depth}, batch {options.batch}, {options.threads} thread(s), {options.steps} steps x "
          f"{options.rounds} rounds; median images/s")
    print("| step | images/s | vs PyTorch |\n|---|---|---|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / peer:.2f}x |")


if __name__ == "__main__":
    main()
