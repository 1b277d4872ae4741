"""Grad-CAM: the closed form equals autodiff Grad-CAM, and on a trained detector it finds the object."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_preresnet as kp
from keras_preresnet import datasets, preprocessing
from keras_preresnet.analysis import cam
from model_testing import randomize_batchnorm

PATCH = 8
PATCH_COLOUR = (255, 0, 255)


@pytest.mark.parametrize("unit", ["full_preactivation", "original"])
def test_closed_form_equals_gradient_tape_grad_cam(unit, cifar_dir):
    keras.utils.set_random_seed(0)
    logits = kp.build_resnet(8, unit=unit, classifier_activation=None)
    randomize_batchnorm(logits)
    softmax = kp.build_resnet(8, unit=unit)
    softmax.set_weights(logits.get_weights())
    images, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    x = preprocessing.preprocess(images[:4], "cifar10")
    classes = np.array([0, 3, 5, 9])
    # Grad-CAM as Selvaraju et al. write it: gradients of the pre-softmax score by automatic differentiation.
    both = keras.Model(logits.inputs, [logits.get_layer("avg_pool").input, logits.output])
    with tf.GradientTape() as tape:
        features, scores = both(tf.constant(x))
        chosen = tf.gather(scores, classes, batch_dims=1)
    gradients = tape.gradient(chosen, features)
    alpha = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)
    expected = tf.nn.relu(tf.reduce_sum(alpha * features, axis=-1)).numpy()
    got = cam.grad_cam(softmax, x, classes)
    assert got.shape == (4, 8, 8) and expected.max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.max())


def _patched(images, rng):
    """Half of the images get a magenta square at a random place; labels say which."""
    images = images.copy()
    labels = (np.arange(len(images)) % 2).astype("int64")
    corners = rng.randint(0, 32 - PATCH, size=(len(images), 2))
    for i in np.flatnonzero(labels):
        top, left = corners[i]
        images[i, top: top + PATCH, left: left + PATCH] = PATCH_COLOUR
    return images, labels, corners


def test_map_of_a_trained_patch_detector_peaks_on_the_patch(cifar_dir):
    train, _ = datasets.load_cifar(cifar_dir, "cifar10", "train")
    test, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    rng = np.random.RandomState(0)
    x, y, _ = _patched(train[:600], rng)
    keras.utils.set_random_seed(0)
    model = kp.build_resnet(8, classes=2, include_preprocessing=True)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=50, epochs=3, verbose=0)
    x_test, y_test, corners = _patched(test[:200], rng)
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.9
    patched = np.flatnonzero(y_test)
    maps = cam.grad_cam(model, x_test[patched], np.ones(len(patched), "int64"))
    # The last stage has stride 4: cell (r, c) covers pixels [4r, 4r + 4). A hit is a peak cell whose
    # centre lies on the patch or within one cell of it. A map that ignored the image would hit about
    # one time in five (the patch and its margin cover 4x4 of the 8x8 cells).
    hits = 0
    for heat, (top, left) in zip(maps, corners[patched]):
        row, column = cam.peak(heat)
        hits += (top - 4 <= 4 * row + 2 < top + PATCH + 4) and (left - 4 <= 4 * column + 2 < left + PATCH + 4)
    assert hits >= 0.9 * len(patched), f"{hits} of {len(patched)} maps peak on the patch"


def test_overlay_colours_only_the_box_and_keeps_the_rest():
    image = np.full((40, 60, 3), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    out = cam.overlay(image, heat, box=(5, 10, 30, 30))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[:5] == 100).all() and (out[:, :10] == 100).all() and (out[:, 40:] == 100).all()
    # The hot corner turns red-ish, the cold far corner blue-ish (jet colour map at half opacity).
    assert out[5, 10, 0] > out[5, 10, 2] and out[34, 39, 2] > out[34, 39, 0]


def test_models_without_a_classifier_are_refused():
    model = kp.build_resnet(8, include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="include_top=True"):
        cam.grad_cam(model, np.zeros((1, 32, 32, 3), np.float32), [0])
