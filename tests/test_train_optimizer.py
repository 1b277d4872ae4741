"""Torch's SGD as a Keras optimiser: the update of torch.optim.SGD, its slots in checkpoints, loss scaling."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from keras_preresnet.train import schedules
from keras_preresnet.train.optimizer import TorchSGD

SHAPES = ((3, 4), (5,))
STEPS = 10
DROP = 5  # the rate drops from 0.1 to 0.01 before this step


def _gradients(seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(shape).astype(np.float32) for shape in SHAPES] for _ in range(STEPS)]


def _initial(seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]


def _torch_trajectory(nesterov):
    weights = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in _initial()]
    sgd = torch.optim.SGD(weights, lr=0.1, momentum=0.9, dampening=0, nesterov=nesterov)
    trajectory = []
    for step, grads in enumerate(_gradients()):
        for group in sgd.param_groups:
            group["lr"] = 0.1 if step < DROP else 0.01
        for weight, grad in zip(weights, grads):
            weight.grad = torch.from_numpy(grad)
        sgd.step()
        trajectory.append([w.detach().numpy().copy() for w in weights])
    return trajectory


def _keras_trajectory(optimizer):
    variables = [keras.Variable(w) for w in _initial()]
    optimizer.build(variables)
    trajectory = []
    for grads in _gradients():
        optimizer.apply([tf.constant(g) for g in grads], variables)
        trajectory.append([v.numpy().copy() for v in variables])
    return trajectory


def _step_drop():
    return schedules.StepSchedule([DROP], [0.1, 0.01])


@pytest.mark.parametrize("nesterov", [False, True])
def test_updates_match_torch_sgd_across_a_learning_rate_drop(nesterov):
    ours = _keras_trajectory(TorchSGD(_step_drop(), momentum=0.9, nesterov=nesterov))
    theirs = _torch_trajectory(nesterov)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")


def test_keras_sgd_differs_from_torch_after_the_drop():
    # The reason for TorchSGD: Keras' velocity carries the old rate past the drop.
    keras_sgd = _keras_trajectory(keras.optimizers.SGD(_step_drop(), momentum=0.9))
    theirs = _torch_trajectory(nesterov=False)
    np.testing.assert_allclose(keras_sgd[DROP - 1][0], theirs[DROP - 1][0], rtol=1e-5, atol=1e-6)
    assert np.abs(keras_sgd[DROP][0] - theirs[DROP][0]).max() > 1e-2


def test_velocity_is_restored_from_a_checkpoint(tmp_path):
    gradients = _gradients()
    variables = [keras.Variable(w) for w in _initial()]
    optimizer = TorchSGD(_step_drop(), momentum=0.9, nesterov=True)
    optimizer.build(variables)
    checkpoint = tf.train.Checkpoint(optimizer=optimizer, weights=variables)
    for grads in gradients[:3]:
        optimizer.apply([tf.constant(g) for g in grads], variables)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    for grads in gradients[3:]:
        optimizer.apply([tf.constant(g) for g in grads], variables)
    expected = [v.numpy() for v in variables]

    restored_variables = [keras.Variable(np.zeros(shape, np.float32)) for shape in SHAPES]
    restored = TorchSGD(_step_drop(), momentum=0.9, nesterov=True)
    restored.build(restored_variables)
    tf.train.Checkpoint(optimizer=restored, weights=restored_variables).restore(path).assert_consumed()
    assert int(restored.iterations.numpy()) == 3
    for grads in gradients[3:]:
        restored.apply([tf.constant(g) for g in grads], restored_variables)
    for a, b in zip(restored_variables, expected):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-6)


def test_loss_scale_optimizer_unscales_before_the_torch_update():
    ours = TorchSGD(_step_drop(), momentum=0.9)
    scaled = keras.optimizers.LossScaleOptimizer(ours, initial_scale=1024.0)
    variables = [keras.Variable(w) for w in _initial()]
    scaled.build(variables)
    for grads in _gradients():
        scaled.apply([tf.constant(g * 1024.0) for g in grads], variables)
    for x, y in zip(variables, _torch_trajectory(nesterov=False)[-1]):
        np.testing.assert_allclose(x.numpy(), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=0.0, nesterov=True), "Nesterov"),
])
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        TorchSGD(0.1, **arguments)
