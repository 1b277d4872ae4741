"""Looped stages (keras_preresnet.stages): the same function, gradients, statistics and weight files as
the unrolled network, on whichever backend runs the tests (CI runs this module on TensorFlow and JAX)."""

import os

import keras
import numpy as np
import pytest

from keras_preresnet import layers as L
from keras_preresnet import models, stages
from model_testing import randomize_batchnorm

BACKEND = keras.backend.backend()
BLOCKS = (1, 1, 4)  # the last stage loops three units
SHAPE = (16, 16, 3)


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _pair(unit="full_preactivation", form=None, shortcut="identity", shortcut_options=None, **kwargs):
    """An unrolled net and its looped twin with the same weights (random BN statistics included)."""
    depth = {"bottleneck": 29, "one_layer": 11}.get(form, 20)
    options = dict(unit=unit, form=form, shortcut=shortcut, shortcut_options=shortcut_options, blocks=BLOCKS,
                   input_shape=SHAPE, classes=5, **kwargs)
    unrolled = models.build_resnet(depth, scan_units=False, **options)
    randomize_batchnorm(unrolled, seed=1)
    looped = models.build_resnet(depth, scan_units=True, **options)
    stages.copy_weights(unrolled, looped)
    return unrolled, looped


def _x(n=4, seed=0):
    return np.random.RandomState(seed).normal(size=(n,) + SHAPE).astype("float32")


def _by_unit_path(model, values):
    """``{unrolled variable path: array}`` for ``values`` given in the order of ``model.variables``."""
    out = {}
    for variable, value in zip(model.variables, values):
        out[variable.path] = _np(value)
    for layer in model.layers:
        if isinstance(layer, stages.ScannedStage):
            template = layer.template
            for stacked, unit_variable in zip(layer.stacked, template.weights):
                value = out.pop(stacked.path)
                # The template's variables live under the stage's name: conv3_block2_loop/conv3_block2/...
                path = unit_variable.path.removeprefix(f"{layer.name}/")
                for j, name in enumerate(layer.unit_names):
                    out[path.replace(template.name, name)] = value[j]
    return out


def _training_step(model, x):
    """Compiled forward pass in training mode: outputs, the gradient of a fixed loss for every trainable
    variable and every variable's value afterwards (BatchNorm moving statistics updated)."""
    probe = np.random.RandomState(7).normal(size=(x.shape[0], 5)).astype("float32")
    if BACKEND == "jax":
        import jax

        def loss(trainable, non_trainable):
            y, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return (y * probe).sum(), (y, non_trainable)

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        grads, (y, non_trainable) = jax.jit(jax.grad(loss, has_aux=True))(trainable, non_trainable)
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            variable.assign(value)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step():
            with tf.GradientTape() as tape:
                y = model(x, training=True)
                loss = tf.reduce_sum(y * probe)
            return y, tape.gradient(loss, model.trainable_variables)

        y, grads = step()
    else:
        pytest.skip(f"gradients are compared on TensorFlow and JAX, not {BACKEND}")
    grads = dict(zip([v.path for v in model.trainable_variables], grads))
    # Non-trainable variables get a zero gradient so that both dictionaries cover the same paths.
    ordered = [grads.get(v.path, np.zeros(v.shape, "float32")) for v in model.variables]
    return _np(y), _by_unit_path(model, ordered), _by_unit_path(model, [v.value for v in model.variables])


def _assert_close(a, b, what):
    assert sorted(a) == sorted(b), what
    for path in a:
        scale = max(np.abs(a[path]).max(), 1e-6)
        err = np.abs(a[path] - b[path]).max() / scale
        assert err <= 1e-5, f"{what} of {path}: relative error {err:.2e}"


CASES = [(unit, "basic", "identity") for unit in sorted(L.UNITS)] + [
    ("full_preactivation", "bottleneck", "identity"),
    ("original", "bottleneck", "identity"),
    ("full_preactivation", "one_layer", "identity"),
    ("bn_after_addition", "one_layer", "identity"),
    ("full_preactivation", "basic", "exclusive_gating"),
    ("original", "basic", "shortcut_only_gating"),
    ("full_preactivation", "basic", "conv1x1"),
    ("relu_only_preactivation", "basic", "constant_scaling"),
]


@pytest.mark.parametrize("unit,form,shortcut", CASES)
def test_looped_stage_matches_unrolled_outputs_gradients_and_statistics(unit, form, shortcut):
    unrolled, looped = _pair(unit, form, shortcut)
    assert any(isinstance(l, stages.ScannedStage) for l in looped.layers)
    x = _x()
    np.testing.assert_allclose(_np(looped(x, training=False)), _np(unrolled(x, training=False)),
                               rtol=1e-5, atol=1e-6)
    y0, grads0, after0 = _training_step(unrolled, x)
    y1, grads1, after1 = _training_step(looped, x)
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-6)
    _assert_close(grads0, grads1, "gradient")
    _assert_close(after0, after1, "value after the step")
