"""Eqn. 4/5 of the Identity Mappings paper as tests.

With identity shortcuts and identity after-addition f, a unit is x_{l+1} = x_l + F(x_l). If every
residual branch outputs zero, any deeper unit L sees x_L = x_l (Eqn. 4) and the gradient reaches x_l
unchanged, dE/dx_l = dE/dx_L (Eqn. 5). The original unit's ReLU after the addition breaks both for
negative signals.
"""

import keras
import numpy as np
import pytest

import keras_preresnet as kp
from keras_preresnet import layers as L


def _zero_residual_branches(model):
    units = [l for l in model.layers if isinstance(l, L.ResidualUnit)]
    for unit in units:
        last_conv = [l for l in unit.branch_layers if isinstance(l, L.TorchConv2D)][-1]
        last_conv.kernel.assign(np.zeros(last_conv.kernel.shape, "float32"))
    return units


def _value_and_input_gradient(fn, x, upstream):
    """fn(x) and d<upstream, fn(x)>/dx on the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * upstream)
        return y.numpy(), tape.gradient(loss, x).numpy()
    if backend == "jax":
        import jax

        y, vjp = jax.vjp(fn, x)
        return np.asarray(y), np.asarray(vjp(upstream)[0])
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        y = fn(x)
        (y * torch.tensor(upstream)).sum().backward()
        return y.detach().cpu().numpy(), x.grad.cpu().numpy()
    pytest.skip(f"no gradient helper for backend {backend}")


def _identity_units_of_stage(units, stage):
    return [u for u in units if u.name.startswith(f"conv{stage}_") and not u.name.endswith("_block1")]


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_full_preactivation_stage_propagates_signal_and_gradient_exactly(stage):
    model = kp.PreActResNet110()
    stage_units = _identity_units_of_stage(_zero_residual_branches(model), stage)
    assert len(stage_units) == 17
    width = stage_units[0].output_filters
    x_l = np.random.RandomState(0).normal(size=(2, 4, 4, width)).astype("float32")  # negatives included
    upstream = np.random.RandomState(1).normal(size=x_l.shape).astype("float32")

    def through_stage(x):
        for unit in stage_units:
            x = unit(x, training=False)
        return x

    x_L, grad = _value_and_input_gradient(through_stage, x_l, upstream)
    np.testing.assert_array_equal(x_L, x_l)  # Eqn. 4: x_L = x_l + sum F = x_l
    np.testing.assert_array_equal(grad, upstream)  # Eqn. 5: dE/dx_l = dE/dx_L


def test_original_unit_breaks_both_on_negative_signals():
    model = kp.ResNet110()
    stage_units = _identity_units_of_stage(_zero_residual_branches(model), 3)
    x_l = np.random.RandomState(0).normal(size=(2, 4, 4, 32)).astype("float32")
    upstream = np.ones_like(x_l)

    def through_stage(x):
        for unit in stage_units:
            x = unit(x, training=False)
        return x

    x_L, grad = _value_and_input_gradient(through_stage, x_l, upstream)
    negative = x_l < 0
    assert negative.any()
    np.testing.assert_array_equal(x_L[~negative], x_l[~negative])
    np.testing.assert_array_equal(x_L[negative], 0.0)  # f = ReLU truncates the signal ...
    np.testing.assert_array_equal(grad[negative], 0.0)  # ... and blocks its gradient
    assert not np.array_equal(grad, upstream)
