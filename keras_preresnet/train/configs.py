"""The paper's experiments as named configs: a model, a dataset and a recipe each (docs/training.md).

A ``Recipe`` is the optimiser and learning-rate schedule as a paper or its public code states it: in
iterations at the reference batch size (the paper's CIFAR appendix: lr 0.1, /10 at 32k and 48k, stop at
64k, warm-up at 0.01 for 400 iterations) or in epochs (the public CIFAR code: 200 epochs, epochs 81 and
122 the first at the lower rates, Nesterov; ImageNet: 90 epochs, /10 every 30, Nesterov).

Batch size and learning rate (the rule the trainer applies, documented in docs/training.md):

* ``batch_size`` is the *global* batch, split evenly over the replicas of the strategy.
* The learning rate scales linearly with the global batch: ``lr = base_lr * batch / reference_batch``
  (Goyal et al. 2017); ``lr_scaling='none'`` keeps ``base_lr``.
* A schedule given in iterations keeps the number of images seen: its iteration counts scale by
  ``reference_batch / batch``. A schedule given in epochs is unchanged.
"""

import bisect
import dataclasses
import math

from keras_preresnet.datasets import DATASETS
from keras_preresnet import published
from keras_preresnet.models import ARCHITECTURES, stage_plan
from keras_preresnet.published import PAPER_ERRORS
from keras_preresnet.train.options import Options

CIFAR_AUGMENTATION = "cifar"
IMAGENET_AUGMENTATION = "imagenet"
IMAGENET_SCALE_AUGMENTATION = "imagenet_scale"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule. ``unit`` says whether ``total``, ``boundaries`` and ``warmup`` count
    iterations (at ``reference_batch``) or epochs; the rate drops by ``decay`` at each boundary."""

    unit: str
    total: float
    boundaries: tuple
    base_lr: float = 0.1
    reference_batch: int = 128
    decay: float = 0.1
    warmup: float = 0
    warmup_lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4


@dataclasses.dataclass(frozen=True)
class ResolvedSchedule:
    """A recipe in optimiser steps for a given dataset size and global batch."""

    steps_per_epoch: int
    total_steps: int
    boundaries: tuple  # step at which each value after the first starts
    values: tuple  # learning rate of each segment

    @property
    def epochs(self):
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def learning_rate(self, step):
        return self.values[bisect.bisect_right(self.boundaries, step)]


RECIPES = {
    # Identity Mappings paper, appendix: 64k iterations at batch 128 (about 164 epochs on 50k images).
    "cifar_paper": Recipe(unit="iterations", total=64_000, boundaries=(32_000, 48_000)),
    # The same, with the 400-iteration warm-up at lr 0.01 the paper uses for ResNet-110 and -1001.
    "cifar_paper_warmup": Recipe(unit="iterations", total=64_000, boundaries=(32_000, 48_000), warmup=400),
    # The public CIFAR code (resnet-1k-layers on fb.resnet.torch): 200 epochs, Nesterov. train.lua counts
    # epochs from 1 and runs epoch 81 and epoch 122 at the lower rates: the drops come after 80 and 121
    # finished epochs.
    "cifar_public_code": Recipe(unit="epochs", total=200, boundaries=(80, 121), nesterov=True),
    # fb.resnet.torch ImageNet, the recipe of the released ResNet-200: 90 epochs, /10 every 30.
    "imagenet": Recipe(unit="epochs", total=90, boundaries=(30, 60), reference_batch=256, nesterov=True),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One experiment. ``depth``/``unit``/``shortcut``/``form`` are ``build_resnet`` arguments."""

    name: str
    description: str
    dataset: str
    depth: int
    unit: str
    layout: str
    recipe: str
    form: str = None
    shortcut: str = "identity"
    shortcut_options: dict = None
    batch_size: int = 128
    image_size: int = DATASETS["cifar10"].image_size
    augmentation: str = CIFAR_AUGMENTATION
    projection: str = None  # dimension matching (ResNet paper option A, B or C); None: the layout's default
    paper_error: str = "-"  # the published test error (%) this experiment reproduces
    eval_crop: str = "center"  # the test the published error uses: "center" or "ten_crop"
    validation_fraction: float = None  # the share of the training set the paper held out for validation
    options: Options = Options()  # training options beside the recipe, all off for the papers' experiments

    def __hash__(self):
        return hash(self.name)


_DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}

# Table 1 (ResNet-110, original unit): shortcut types and their options (errors: published.SHORTCUT_ABLATIONS).
_SHORTCUT_ABLATIONS = {
    "constant_scaling_0.5": ("constant_scaling", {"shortcut_scale": 0.5, "residual_scale": 0.5}),
    "constant_scaling_0.5_1": ("constant_scaling", {"shortcut_scale": 0.5, "residual_scale": 1.0}),
    "constant_scaling_0": ("constant_scaling", {"shortcut_scale": 0.0, "residual_scale": 1.0}),
    **{f"exclusive_gating_bg{b}": ("exclusive_gating", {"gate_bias": float(b)}) for b in (0, -6, -7)},
    **{f"shortcut_only_gating_bg{b}": ("shortcut_only_gating", {"gate_bias": float(b)}) for b in (0, -6)},
    "conv1x1": ("conv1x1", None),
    "dropout_0.5": ("dropout", {"rate": 0.5}),
}
# ResNet paper, Table 6 and Fig. 6: the CIFAR-10 depths of its plain nets and ResNets.
_TABLE6_DEPTHS = {"plain": (20, 32, 44, 56, 110), "original": (20, 32, 44, 56, 110, 1202)}
# ResNet paper, Tables 2 and 3 (ImageNet top-1, 10-crop): plain nets and ResNets by (unit, depth, shortcut
# option: A zero padding, B projections where dimensions change, C projections everywhere), with the
# tables each is a row of.
_RESNET_IMAGENET = {
    ("plain", 18, None): ("resnet_table2",),
    ("plain", 34, None): ("resnet_table2", "resnet_table3"),
    ("original", 18, "A"): ("resnet_table2",),
    ("original", 34, "A"): ("resnet_table2", "resnet_table3"),
    ("original", 34, "B"): ("resnet_table3",),
    ("original", 34, "C"): ("resnet_table3",),
}
# The CIFAR schedule (both papers use the ResNet paper's) was chosen on a 45k/5k train/validation split.
_CIFAR_VALIDATION_FRACTION = 0.1
# ResNets the papers train with the 400-iteration warm-up: ResNet-110 (ResNet paper, Sec. 4.2), ResNet-1202
# ("trained as described above", read as including that warm-up) and ResNet-1001 (Identity Mappings paper).
_WARMUP_DEPTHS = (110, 1001, 1202)


def _cifar_config(name, description, dataset, depth, unit, form=None, **kwargs):
    return Config(
        name=name,
        description=description,
        dataset=dataset,
        depth=depth,
        unit=unit,
        form=form,
        layout="cifar",
        recipe="cifar_paper_warmup" if depth in _WARMUP_DEPTHS else "cifar_paper",
        validation_fraction=_CIFAR_VALIDATION_FRACTION,
        **kwargs,
    )


def _format_options(options):
    return f" ({', '.join(f'{k}={v:g}' for k, v in options.items())})" if options else ""


def _form(depth):
    """The paper's unit form for a CIFAR depth, as the library decides it (basic, or bottleneck for 9n+2 >= 164)."""
    return stage_plan(depth, "cifar")[0]


_KIND = {"plain": "plain", "original": "ResNet"}


def _architecture(unit, depth):
    """``('plain', 20)`` -> ``'plain20'``, ``('original', 34)`` -> ``'resnet34'`` (keys of ARCHITECTURES)."""
    return f"{'plain' if unit == 'plain' else 'resnet'}{depth}"


def _imagenet_name(unit, depth, projection):
    return f"imagenet_{_architecture(unit, depth)}" + (f"_{projection}" if projection else "")


def _imagenet_error(unit, depth, projection):
    if (unit, depth) == ("original", 34):
        return published.RESNET34_OPTIONS[projection]
    return PAPER_ERRORS[(_architecture(unit, depth), "imagenet2012")]


def _build_configs():
    configs = []
    for dataset in ("cifar10", "cifar100"):
        for architecture in ("resnet110", "resnet164", "resnet1001",
                             "preact_resnet110", "preact_resnet164", "preact_resnet1001"):
            spec = ARCHITECTURES[architecture]
            kind = "pre-activation" if spec["unit"] == "full_preactivation" else "original"
            configs.append(_cifar_config(
                f"{dataset}_{architecture}",
                f"{_DATASET_NAMES[dataset]} {kind} ResNet-{spec['depth']} (Tables 2-4)",
                dataset, spec["depth"], spec["unit"], _form(spec["depth"]),
                paper_error=PAPER_ERRORS.get((architecture, dataset), "-"),
            ))
    for depth in (110, 164):
        for suffix, (shortcut, options) in _SHORTCUT_ABLATIONS.items():
            configs.append(_cifar_config(
                f"cifar10_resnet{depth}_{suffix}",
                f"CIFAR-10 ResNet-{depth}, original unit, {shortcut} shortcut"
                f"{_format_options(options)} (Table 1)",
                "cifar10", depth, "original", _form(depth), shortcut=shortcut, shortcut_options=options,
                paper_error=published.SHORTCUT_ABLATIONS[suffix] if depth == 110 else "-",
            ))
        for unit, errors in published.UNIT_ABLATIONS.items():
            configs.append(_cifar_config(
                f"cifar10_resnet{depth}_{unit}",
                f"CIFAR-10 ResNet-{depth}, {unit} unit (Table 2)",
                "cifar10", depth, unit, _form(depth), paper_error=errors[depth == 164],
            ))
    for unit, prefix in (("original", "resnet110"), ("full_preactivation", "preact_resnet110")):
        configs.append(_cifar_config(
            f"cifar10_{prefix}_1layer", f"CIFAR-10 {unit.replace('_', '-')} ResNet-110 of 1-layer units (Table 3)",
            "cifar10", 110, unit, "one_layer", paper_error=published.ONE_LAYER_UNITS[unit],
        ))
    known = {config.name for config in configs}
    for unit, depths in _TABLE6_DEPTHS.items():
        for depth in depths:
            name = f"cifar10_{_architecture(unit, depth)}"
            if name not in known:  # ResNet-110 is already a config (Identity Mappings Tables 1-3)
                configs.append(_cifar_config(
                    name, f"CIFAR-10 {_KIND[unit]}-{depth}, option A (ResNet paper Table 6, Fig. 6)",
                    "cifar10", depth, unit, "basic",
                    paper_error=PAPER_ERRORS.get((_architecture(unit, depth), "cifar10"), "-"),
                ))
    for unit, depth, projection in _RESNET_IMAGENET:
        configs.append(Config(
            name=_imagenet_name(unit, depth, projection),
            description=f"ImageNet {_KIND[unit]}-{depth}" + (f", option {projection}" if projection else "")
                        + " (ResNet paper Tables 2-3; scale augmentation, fb.resnet.torch schedule, 10-crop test)",
            dataset="imagenet2012", depth=depth, unit=unit, layout="imagenet", projection=projection,
            recipe="imagenet", batch_size=256, image_size=DATASETS["imagenet2012"].image_size,
            augmentation=IMAGENET_SCALE_AUGMENTATION, paper_error=_imagenet_error(unit, depth, projection),
            eval_crop="ten_crop",
        ))
    for architecture in ("preact_resnet200", "resnet50", "preact_resnet50", "resnet152", "preact_resnet152"):
        spec = ARCHITECTURES[architecture]
        kind = "pre-activation" if spec["unit"] == "full_preactivation" else "original"
        configs.append(Config(
            name=f"imagenet_{architecture}",
            description=f"ImageNet {kind} ResNet-{spec['depth']} (fb.resnet.torch recipe"
                        f"{' of the released checkpoint' if architecture == 'preact_resnet200' else ''})",
            dataset="imagenet2012", depth=spec["depth"], unit=spec["unit"], layout="imagenet",
            recipe="imagenet", batch_size=256, image_size=DATASETS["imagenet2012"].image_size,
            augmentation=IMAGENET_AUGMENTATION, paper_error=PAPER_ERRORS.get((architecture, "imagenet2012"), "-"),
        ))
    return {config.name: config for config in configs}


CONFIGS = _build_configs()


def get_config(name):
    """The config called ``name``; a ValueError lists the known names otherwise."""
    if name not in CONFIGS:
        close = [known for known in CONFIGS if name and name.split("_")[0] in known][:8]
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown config {name!r}.{hint} Run `python -m keras_preresnet.train --list_configs` to see all "
            f"{len(CONFIGS)} configs."
        )
    return CONFIGS[name]


def resolve_schedule(recipe, train_examples, global_batch, *, epochs=None, steps=None, base_lr=None,
                     lr_scaling="linear", warmup_iterations=None):
    """Turns ``recipe`` into optimiser steps for ``train_examples`` images at ``global_batch``.

    ``epochs`` or ``steps`` overrides the length; the boundaries and the warm-up then keep their
    fraction of the run. ``base_lr`` overrides the recipe's rate at the reference batch.
    ``warmup_iterations`` replaces the recipe's warm-up by one of that many iterations at the reference
    batch, whatever the length of the run (0: no warm-up).
    """
    if lr_scaling not in ("linear", "none"):
        raise ValueError(f"`lr_scaling` must be 'linear' or 'none'; received {lr_scaling!r}.")
    steps_per_epoch = train_examples // global_batch
    if steps_per_epoch < 1:
        raise ValueError(
            f"The global batch ({global_batch}) is larger than the training set ({train_examples} images); "
            "use a smaller --batch_size."
        )
    if recipe.unit == "iterations":
        per_step = recipe.reference_batch / global_batch
    else:
        per_step = steps_per_epoch
    total = recipe.total * per_step
    boundaries = [b * per_step for b in recipe.boundaries]
    warmup = recipe.warmup * per_step
    if epochs is not None or steps is not None:
        new_total = steps if steps is not None else epochs * steps_per_epoch
        factor = new_total / total
        total, boundaries, warmup = new_total, [b * factor for b in boundaries], warmup * factor
    if warmup_iterations is not None:
        warmup = warmup_iterations * recipe.reference_batch / global_batch
        if boundaries and round(warmup) >= round(boundaries[0]):
            raise ValueError(
                f"--warmup_iterations={warmup_iterations:g} ({round(warmup)} steps) must end before the first "
                f"learning-rate drop (step {max(1, round(boundaries[0]))}); use a shorter warm-up or a longer run.")
    scale = global_batch / recipe.reference_batch if lr_scaling == "linear" else 1.0
    lr = (recipe.base_lr if base_lr is None else base_lr) * scale
    values = [lr * recipe.decay**i for i in range(len(boundaries) + 1)]
    points = [max(1, round(b)) for b in boundaries]
    if warmup:
        points = [max(1, round(warmup))] + points
        values = [recipe.warmup_lr * scale] + values
    return ResolvedSchedule(
        steps_per_epoch=steps_per_epoch,
        total_steps=max(1, round(total)),
        boundaries=tuple(points),
        values=tuple(values),
    )


@dataclasses.dataclass(frozen=True)
class TableRow:
    """One row of a paper's table: a config, the figure panel it is drawn in, the series that picks its
    colour (the same series has the same colour in every panel, as depth does in Fig. 6 of the ResNet
    paper), its label, and the published error where this table states another than the config's."""

    config: str
    panel: str
    series: str
    label: str
    published: str = None


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of a paper as a list of configs (run by ``python -m keras_preresnet.train.table``)."""

    name: str
    title: str
    rows: tuple

    def published(self, row):
        return row.published if row.published is not None else CONFIGS[row.config].paper_error


_UNIT_LABELS = {
    "original": "original (Fig. 4a)",
    "bn_after_addition": "BN after addition (Fig. 4b)",
    "relu_before_addition": "ReLU before addition (Fig. 4c)",
    "relu_only_preactivation": "ReLU-only pre-activation (Fig. 4d)",
    "full_preactivation": "full pre-activation (Fig. 4e)",
}


def _unit_config(depth, unit):
    return {"original": f"cifar10_resnet{depth}", "full_preactivation": f"cifar10_preact_resnet{depth}"}.get(
        unit, f"cifar10_resnet{depth}_{unit}")


def _build_tables():
    table1 = [TableRow("cifar10_resnet110", "ResNet-110", "original", "original")] + [
        TableRow(f"cifar10_resnet110_{suffix}", "ResNet-110", suffix, suffix) for suffix in _SHORTCUT_ABLATIONS
    ]
    table2 = [
        TableRow(_unit_config(depth, unit), f"ResNet-{depth}", unit, label)
        for depth in (110, 164) for unit, label in _UNIT_LABELS.items()
    ]
    table3 = []
    for unit, panel, prefix in (("original", "baseline unit", "resnet"),
                                ("full_preactivation", "pre-activation unit", "preact_resnet")):
        table3.append(TableRow(f"cifar10_{prefix}110_1layer", panel, "CIFAR-10 ResNet-110 (1-layer skip)",
                               "CIFAR-10 ResNet-110 (1-layer skip)"))
        for dataset, depths in (("cifar10", (110, 164, 1001)), ("cifar100", (164, 1001))):
            for depth in depths:
                name = f"{_DATASET_NAMES[dataset]} ResNet-{depth}"
                table3.append(TableRow(f"{dataset}_{prefix}{depth}", panel, name, name))
    table6 = [
        TableRow(f"cifar10_{_architecture(unit, depth)}", panel, f"{depth} layers", f"{panel}-{depth}",
                 published=published.RESNET110_TABLE6 if (unit, depth) == ("original", 110) else None)
        for unit, panel in (("plain", "plain"), ("original", "ResNet")) for depth in _TABLE6_DEPTHS[unit]
    ]
    imagenet = {
        table: tuple(
            TableRow(_imagenet_name(unit, depth, projection), "plain" if unit == "plain" else "ResNet",
                     f"{depth} layers", f"{'plain' if unit == 'plain' else 'ResNet'}-{depth}"
                     + (f" {projection}" if projection else ""))
            for (unit, depth, projection), tables in _RESNET_IMAGENET.items() if table in tables)
        for table in ("resnet_table2", "resnet_table3")
    }
    tables = [
        Table("resnet_table2", "ResNet paper, Table 2 and Fig. 4: plain nets vs ResNets (option A) on ImageNet",
              imagenet["resnet_table2"]),
        Table("resnet_table3", "ResNet paper, Table 3: plain-34 and ResNet-34 with shortcut options A, B, C (ImageNet)",
              imagenet["resnet_table3"]),
        Table("resnet_table6", "ResNet paper, Table 6 and Fig. 6: plain nets and ResNets on CIFAR-10", tuple(table6)),
        Table("identity_table1", "Identity Mappings paper, Table 1: shortcut types on ResNet-110 (CIFAR-10)",
              tuple(table1)),
        Table("identity_table2", "Identity Mappings paper, Table 2: activation placement (CIFAR-10)",
              tuple(table2)),
        Table("identity_table3", "Identity Mappings paper, Table 3: original vs pre-activation units (CIFAR-10/100)",
              tuple(table3)),
    ]
    return {table.name: table for table in tables}


TABLES = _build_tables()


def get_table(name):
    """The table called ``name``; a ValueError lists the known tables otherwise."""
    if name not in TABLES:
        raise ValueError(f"Unknown table {name!r}; known tables: {', '.join(TABLES)}.")
    return TABLES[name]


def tables_of(config_name):
    """The names of the tables that ``config_name`` is a row of."""
    return [table.name for table in TABLES.values() if any(row.config == config_name for row in table.rows)]
