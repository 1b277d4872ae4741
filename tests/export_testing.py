"""Shared pieces of the export tests: a tiny CIFAR classifier and folders of real CIFAR images as files."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_preresnet  # noqa: E402
import model_testing  # noqa: E402
from keras_preresnet.export import servable as servable_lib  # noqa: E402
from keras_preresnet.datasets import CIFAR10_CLASSES, load_cifar  # noqa: E402


def tiny_servable(cifar_dir=None, name="tiny", seed=0):
    """A CIFAR pre-activation net with one unit per stage (depth 8), random weights, CIFAR-10 labels.

    BatchNorm statistics are randomised so that folding and quantisation have something to get wrong.
    Given ``cifar_dir``, the net also gets ``plausible_random_weights`` from real training images, so that
    its top-1 class varies over real test images (see ``assert_predictions_vary``).
    """
    keras.utils.set_random_seed(seed)
    model = keras_preresnet.build_resnet(8, unit="full_preactivation")
    model_testing.randomize_batchnorm(model, seed)
    servable = servable_lib.Servable(model, name, CIFAR10_CLASSES, "cifar10")
    if cifar_dir is not None:
        train_images, _ = load_cifar(cifar_dir, "cifar10", "train")
        inputs = np.stack([servable.preprocess(image).numpy() for image in train_images[:64]])
        plausible_random_weights(model, inputs, seed)
    return servable


def assert_predictions_vary(probabilities, classes=4):
    """Fails unless the top-1 classes of ``probabilities`` take at least ``classes`` values: with fewer,
    top-1 agreement barely tests an artifact (a model that ignores its input would agree)."""
    top1 = np.asarray(probabilities).argmax(-1)
    assert len(set(top1.tolist())) >= classes, f"the test model predicts only {sorted(set(top1.tolist()))}"


def plausible_random_weights(model, inputs, seed=0):
    """Gives a randomly initialised classifier the activation scales of a trained one, in place.

    A deep net fresh from its initialiser has identity BatchNorm statistics, so its activations grow
    unit after unit and its softmax is one-hot: every artifact, quantised or not, then agrees exactly, and
    a classifier rescaled to tame the logits underflows float16. Here every BatchNorm takes the batch
    statistics of ``inputs`` (one pass in training mode with momentum 0), gamma and beta are randomised
    (so folding them is not trivial), and the classifier is scaled to logits of standard deviation 2 and
    centred on ``inputs`` (so that no class wins every image and top-1 agreement means something).
    """
    model_testing.randomize_batchnorm(model, seed)
    norms = model_testing.batch_norms(model)
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(inputs, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    features = keras.Model(model.inputs, model.get_layer("avg_pool").output).predict(inputs, verbose=0)
    dense = model.get_layer("predictions")
    kernel = dense.get_weights()[0]
    kernel = kernel * (2.0 / np.std(features @ kernel))
    dense.set_weights([kernel, -np.mean(features @ kernel, axis=0)])


def write_pngs(pixels, folder):
    """Writes each ``[H, W, 3]`` uint8 image of ``pixels`` to ``folder`` as ``0000.png``, ``0001.png``, ...; returns
    ``folder``: real images as the exporter and the servers read them."""
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(pixels):
        tf.io.write_file(os.path.join(folder, f"{i:04d}.png"), tf.io.encode_png(image))
    return folder


def write_cifar_images(cifar_dir, folder, count=8, start=0, sizes=None):
    """Writes ``count`` CIFAR-10 test images to ``folder``, alternating JPEG and PNG; returns the paths.

    ``sizes`` optionally gives each image a (height, width) it is resized to first.
    """
    images, _ = load_cifar(cifar_dir, "cifar10", "test")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        image = images[start + i]
        if sizes is not None:
            image = tf.cast(tf.image.resize(image, sizes[i % len(sizes)]), tf.uint8)
        if i % 2:
            path, data = os.path.join(folder, f"{i:03d}.png"), tf.io.encode_png(image)
        else:
            path, data = os.path.join(folder, f"{i:03d}.jpg"), tf.io.encode_jpeg(image, quality=95)
        tf.io.write_file(path, data)
        paths.append(path)
    return paths
