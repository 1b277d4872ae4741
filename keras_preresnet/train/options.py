"""Training options beside the papers' recipes: label smoothing, cosine decay, weight EMA, MixUp/CutMix,
RandAugment and stochastic depth.

Each is a field of ``Options`` (a config's ``options``) and a flag of ``python -m keras_preresnet.train`` of the same
name. The defaults switch every option off, so the paper's configs train exactly as published; a
flag that is not given keeps the config's value.
"""

import dataclasses

LR_SCHEDULES = ("step", "cosine")


@dataclasses.dataclass(frozen=True)
class Options:
    """Training options; the defaults are the papers' recipes (every option off)."""

    label_smoothing: float = 0.0  # target (1 - e) on the label and e / K on every class (Szegedy et al. 2016)
    lr_schedule: str = "step"  # 'step': the recipe's drops; 'cosine': cosine decay to 0 from the recipe's base rate
    warmup_epochs: float = 0.0  # linear warm-up from 0 before the cosine decay
    # The step recipes' warm-up (the recipe's warm-up rate, 0.01 at batch 128) for this many iterations at the
    # recipe's reference batch, kept when --epochs/--steps shortens the run; None: the recipe's own warm-up,
    # which keeps its fraction of the run (400 of 64k iterations); 0: none.
    warmup_iterations: float = None
    ema_decay: float = 0.0  # exponential moving average of the weights, tested and saved instead of them; 0: off
    mixup_alpha: float = 0.0  # MixUp (Zhang et al. 2018), mixing weight ~ Beta(alpha, alpha); 0: off
    cutmix_factor: float = 0.0  # CutMix (Yun et al. 2019), box area ~ Beta(factor, factor); 0: off
    randaugment_ops: int = 0  # RandAugment (Cubuk et al. 2020): random ops per image; 0: off
    randaugment_factor: float = 0.5  # RandAugment strength in [0, 1]
    drop_path_rate: float = 0.0  # stochastic depth (Huang et al. 2016): drop rate of the last unit's branch

    def __post_init__(self):
        _check_range("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr_schedule must be one of {LR_SCHEDULES}; received {self.lr_schedule!r}.")
        _check_range("warmup_epochs", self.warmup_epochs, 0, None)
        if self.warmup_epochs and self.lr_schedule != "cosine":
            raise ValueError(
                "--warmup_epochs applies to --lr_schedule=cosine; the step recipes bring their own warm-up.")
        if self.warmup_iterations is not None:
            _check_range("warmup_iterations", self.warmup_iterations, 0, None)
            if self.lr_schedule != "step":
                raise ValueError("--warmup_iterations applies to the step recipes (--lr_schedule=step); the cosine "
                                 "schedule warms up with --warmup_epochs.")
        _check_range("ema_decay", self.ema_decay, 0, 1, high_open=True)
        _check_range("mixup_alpha", self.mixup_alpha, 0, None)
        _check_range("cutmix_factor", self.cutmix_factor, 0, None)
        if not isinstance(self.randaugment_ops, int) or self.randaugment_ops < 0:
            raise ValueError(f"--randaugment_ops must be an integer >= 0; received {self.randaugment_ops!r}.")
        _check_range("randaugment_factor", self.randaugment_factor, 0, 1)
        _check_range("drop_path_rate", self.drop_path_rate, 0, 1, high_open=True)

    @property
    def mixes_labels(self):
        """Whether training batches carry mixed (soft) labels."""
        return bool(self.mixup_alpha or self.cutmix_factor)


FIELDS = tuple(field.name for field in dataclasses.fields(Options))
# The fields that shape the learning-rate schedule (a resumed run may change them with --extend).
SCHEDULE_FIELDS = ("lr_schedule", "warmup_epochs", "warmup_iterations")


def _check_range(name, value, low, high, high_open=False):
    above = high is None or (value < high if high_open else value <= high)
    if not isinstance(value, (int, float)) or not (value >= low and above):
        bound = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"--{name} must be a number >= {low}{bound}; received {value!r}.")


def resolve(options, overrides):
    """``options`` with the fields that ``overrides`` (a dict) sets to something other than None replaced."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"Unknown training options {unknown}; known: {list(FIELDS)}.")
    return dataclasses.replace(options, **{k: v for k, v in overrides.items() if v is not None})
