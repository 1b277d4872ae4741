"""Learning-rate schedules: the recipes' step drops, and cosine decay with a linear warm-up.

Both resolved schedules (``configs.ResolvedSchedule`` and ``CosineSchedule``) answer ``steps_per_epoch``,
``total_steps``, ``epochs`` and ``learning_rate(step)``; ``keras_schedule`` and ``record`` take either, so
the trainer does not care which it runs.
"""

import dataclasses
import math

import keras

from keras_preresnet.train import configs


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``values[i]`` from step ``boundaries[i - 1]`` on (steps counted from 0): the rate of
    ``configs.ResolvedSchedule.learning_rate``. (Keras' PiecewiseConstantDecay switches one step later.)"""

    def __init__(self, boundaries, values):
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]

    def __call__(self, step):
        index = keras.ops.sum(keras.ops.cast(
            keras.ops.greater_equal(keras.ops.cast(step, "int64"), self.boundaries), "int32"))
        return keras.ops.take(keras.ops.convert_to_tensor(self.values, "float32"), index)

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values}


@dataclasses.dataclass(frozen=True)
class CosineSchedule:
    """``peak * step / warmup_steps`` during the warm-up, then ``peak * (1 + cos(pi * t)) / 2`` with ``t``
    going from 0 to 1 over the remaining steps (Loshchilov & Hutter 2017, without restarts)."""

    steps_per_epoch: int
    total_steps: int
    peak: float
    warmup_steps: int

    @property
    def epochs(self):
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def learning_rate(self, step):
        if step < self.warmup_steps:
            return self.peak * step / self.warmup_steps
        t = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.peak * 0.5 * (1 + math.cos(math.pi * t))

    def keras_schedule(self):
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if self.warmup_steps else self.peak,
            decay_steps=max(1, self.total_steps - self.warmup_steps),
            warmup_target=self.peak if self.warmup_steps else None,
            warmup_steps=self.warmup_steps,
        )

    def record(self):
        return {"lr_schedule": "cosine", "peak_learning_rate": self.peak, "warmup_steps": self.warmup_steps}


def resolve(schedule, options):
    """The schedule to train with: ``schedule`` (the recipe's, a ``configs.ResolvedSchedule``) as it is, or a
    cosine decay over the same steps from the recipe's base rate (its largest) for ``lr_schedule='cosine'``."""
    if options.lr_schedule == "step":
        return schedule
    warmup = round(options.warmup_epochs * schedule.steps_per_epoch)
    if warmup >= schedule.total_steps:
        raise ValueError(
            f"--warmup_epochs={options.warmup_epochs:g} ({warmup} steps) must be shorter than the run "
            f"({schedule.total_steps} steps)."
        )
    return CosineSchedule(schedule.steps_per_epoch, schedule.total_steps, max(schedule.values), warmup)


def keras_schedule(schedule):
    """The Keras learning-rate schedule the optimiser runs for a resolved schedule."""
    if isinstance(schedule, configs.ResolvedSchedule):
        return StepSchedule(schedule.boundaries, schedule.values)
    return schedule.keras_schedule()


def record(schedule):
    """The schedule's entries in the run summary."""
    if isinstance(schedule, configs.ResolvedSchedule):
        return {"learning_rates": list(schedule.values), "lr_boundaries": list(schedule.boundaries)}
    return schedule.record()
