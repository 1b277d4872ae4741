"""The main job's demo: build a pre-activation ResNet, describe it, and run it on real CIFAR images.

    python -m keras_preresnet.demo [--model=PreActResNet164] [--cifar_dir=DIR] [--train_steps=N]

It prints the model summary, the trainable parameters, the multiply-adds (FLOPs) per image, the paper's
error for that network, and then classifies real CIFAR-10 test images, first untrained and then after
a short training run on the CIFAR-10 training images, with throughput figures.
"""

import os
import pathlib
import time

import keras
import numpy as np
from absl import flags

import keras_preresnet as kp
from keras_preresnet import cli, datasets, preprocessing
from keras_preresnet.models import ARCHITECTURES, LAYOUTS

CIFAR_DIR_ENV = datasets.CIFAR_DIR_ENV
# The documented default (README): the project's shared data folder beside the checkout.
_DEFAULT_CIFAR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar-subset"

flags.DEFINE_string("model", "PreActResNet164", "A named CIFAR builder, e.g. PreActResNet110, ResNet20.")
flags.DEFINE_string("cifar_dir", os.environ.get(CIFAR_DIR_ENV, str(_DEFAULT_CIFAR)),
                    f"Folder holding cifar-10-batches-py (python pickles); default ${CIFAR_DIR_ENV}, else "
                    "../shared/data/cifar-subset beside the checkout.")
flags.DEFINE_integer("images", 256, "Test images to classify.", lower_bound=1)
flags.DEFINE_integer("train_steps", 70, "SGD steps of batch 64 on the training images (0 to skip).",
                     lower_bound=0)
flags.DEFINE_bool("summary", True, "Print the Keras model summary.")
FLAGS = flags.FLAGS


def _accuracy(model, images, labels):
    start = time.perf_counter()
    probs = model.predict(images, batch_size=128, verbose=0)
    seconds = time.perf_counter() - start
    return float((probs.argmax(axis=1) == labels).mean()), len(images) / seconds


def main(argv):
    cli.check_arguments(argv, FLAGS)
    try:
        key = kp.models.resolve_architecture(FLAGS.model)
    except ValueError:
        key = None
    if key is None or ARCHITECTURES[key]["layout"] != "cifar":
        cifar = sorted(kp.models.public_name(k) for k, v in ARCHITECTURES.items() if v["layout"] == "cifar")
        raise cli.usage_error(f"--model must be a CIFAR network, one of {cifar}; got {FLAGS.model!r}.")
    spec = ARCHITECTURES[key]

    model = kp.build_named(key)
    if FLAGS.summary:
        model.summary(line_length=110)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    print(f"\n{FLAGS.model}: depth {spec['depth']}, {spec['unit']} units, "
          f"{len([l for l in model.layers if isinstance(l, kp.ResidualUnit)])} residual units")
    print(f"  trainable parameters  {params:,}")
    print(f"  multiply-adds / image {kp.count_flops(model) / 1e6:,.1f} M at "
          f"{LAYOUTS['cifar']['default_size']}x{LAYOUTS['cifar']['default_size']}")
    print(f"  paper's CIFAR-10 test error {kp.models.PAPER_ERRORS.get((key, 'cifar10'), '-')}%")

    if not os.path.isdir(FLAGS.cifar_dir):
        raise cli.usage_error(
            f"No CIFAR-10 folder at {FLAGS.cifar_dir}: pass --cifar_dir=DIR (the folder holding "
            f"cifar-10-batches-py) or set ${CIFAR_DIR_ENV}."
        )
    x_test, y_test = datasets.load_cifar(FLAGS.cifar_dir, "cifar10", "test")
    normalize = lambda images: preprocessing.preprocess(images, "cifar10")  # noqa: E731
    x_test, y_test = normalize(x_test[: FLAGS.images]), y_test[: FLAGS.images]
    accuracy, speed = _accuracy(model, x_test, y_test)
    print(f"\nUntrained on {len(x_test)} real CIFAR-10 test images: accuracy {accuracy:.3f} "
          f"(chance 0.100), {speed:.0f} images/s")

    if FLAGS.train_steps:
        x_train, y_train = datasets.load_cifar(FLAGS.cifar_dir, "cifar10", "train")
        rng = np.random.RandomState(0)
        order = rng.permutation(len(x_train))
        batches = [order[i:i + 64] for i in range(0, len(order) - 63, 64)]
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        start = time.perf_counter()
        for step in range(FLAGS.train_steps):
            batch = batches[step % len(batches)]
            images = x_train[batch]
            flip = rng.rand(len(batch)) < 0.5
            images[flip] = images[flip, :, ::-1]
            loss, _ = model.train_on_batch(normalize(images), y_train[batch])
            if step % 10 == 0 or step == FLAGS.train_steps - 1:
                print(f"  step {step + 1:4d}/{FLAGS.train_steps}  loss {float(loss):.3f}")
        seconds = time.perf_counter() - start
        accuracy, speed = _accuracy(model, x_test, y_test)
        print(f"After {FLAGS.train_steps} steps ({FLAGS.train_steps * 64 / seconds:.0f} training images/s, "
              f"first step includes tracing): accuracy {accuracy:.3f}, {speed:.0f} images/s")


def run():
    cli.run("demo", main)


if __name__ == "__main__":
    run()
