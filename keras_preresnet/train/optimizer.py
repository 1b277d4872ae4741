"""SGD with momentum in Torch's form, the optimiser of fb.resnet.torch (and so of the paper's public code).

Torch's ``optim.sgd`` (and ``torch.optim.SGD``) keep the velocity in gradient units and apply the
learning rate outside it::

    v = m * v + g                   (dampening 0, as fb.resnet.torch sets it)
    w = w - lr * v                  (plain momentum)
    w = w - lr * (g + m * v)        (Nesterov)

Keras' ``SGD`` puts the rate inside (``v = m * v - lr * g; w = w + v``). The two agree while the rate
is constant; when it drops, Keras' velocity still holds steps taken at the old rate and keeps moving
about ``1 / (1 - m)`` = 10 steps' worth at that rate, where Torch's moves at the new rate at once. In a
compressed schedule that tail is a sizeable part of the epoch after each drop (docs/training.md,
"Fidelity to the reference code").

Weight decay is not the optimiser's: the trainer adds ``wd/2 * ||w||^2`` to the loss, which puts
Torch's coupled ``g + wd * w`` into ``g`` before the momentum and works with loss scaling.
"""

import keras
from keras import ops


class TorchSGD(keras.optimizers.Optimizer):
    """Stochastic gradient descent with Torch's momentum (``lr`` outside the velocity, dampening 0).

    Args:
        learning_rate: a float or a ``keras.optimizers.schedules.LearningRateSchedule``.
        momentum: the momentum ``m`` in [0, 1); 0 is plain gradient descent.
        nesterov: Nesterov momentum (``w -= lr * (g + m * v)``).
        **kwargs: the arguments of ``keras.optimizers.Optimizer`` (``use_ema``, ``ema_momentum``, ...).
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, nesterov=False, name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be a number in [0, 1); received {momentum!r}.")
        if nesterov and not momentum:
            raise ValueError("Nesterov momentum needs a momentum above 0; pass momentum=0.9 or nesterov=False.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity") if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if not self.momentum:
            self.assign_sub(variable, ops.multiply(learning_rate, gradient))
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        new_velocity = ops.add(ops.multiply(momentum, velocity), gradient)
        self.assign(velocity, new_velocity)
        step = ops.add(gradient, ops.multiply(momentum, new_velocity)) if self.nesterov else new_velocity
        self.assign_sub(variable, ops.multiply(learning_rate, step))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
