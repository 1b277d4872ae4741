"""The papers' published test errors (%), in one table: the configs, the paper tables and the demo quote
them from here. "fail": the paper reports the run as failing to train; "-": no published figure."""

# Published test errors (%) by (architecture, dataset): CIFAR median of 5 runs (ResNet paper Table 6;
# Identity Mappings paper Tables 2-4), ImageNet top-1 of a single model (ResNet paper Table 4,
# Identity Mappings paper Table 5).
PAPER_ERRORS = {
    ("resnet20", "cifar10"): "8.75",
    ("resnet32", "cifar10"): "7.51",
    ("resnet44", "cifar10"): "7.17",
    ("resnet56", "cifar10"): "6.97",
    ("resnet110", "cifar10"): "6.61",
    ("resnet164", "cifar10"): "5.93",
    ("resnet1001", "cifar10"): "7.61",
    ("resnet1202", "cifar10"): "7.93",
    ("preact_resnet110", "cifar10"): "6.37",
    ("preact_resnet164", "cifar10"): "5.46",
    ("preact_resnet1001", "cifar10"): "4.92",
    ("plain110", "cifar10"): ">60",  # the ResNet paper draws its plain nets only (Fig. 6): "higher than 60%"
    ("resnet18", "imagenet2012"): "27.88",
    ("resnet34", "imagenet2012"): "21.84",
    ("resnet50", "imagenet2012"): "20.74",
    ("resnet101", "imagenet2012"): "19.87",
    ("resnet152", "imagenet2012"): "19.38",
    ("resnet200", "imagenet2012"): "21.8",
    ("plain18", "imagenet2012"): "27.94",  # ResNet paper Table 2, 10-crop, as its ResNet-18
    ("plain34", "imagenet2012"): "28.54",
    ("preact_resnet152", "imagenet2012"): "21.1",
    ("preact_resnet200", "imagenet2012"): "20.7",
    ("resnet164", "cifar100"): "25.16",
    ("preact_resnet164", "cifar100"): "24.33",
    ("resnet1001", "cifar100"): "27.82",
    ("preact_resnet1001", "cifar100"): "22.71",
}
# Identity Mappings paper, Table 1 (CIFAR-10 ResNet-110, original unit), by shortcut variant (the config's
# suffix, see train/configs.py).
SHORTCUT_ABLATIONS = {
    "constant_scaling_0.5": "12.35",
    "constant_scaling_0.5_1": "fail",
    "constant_scaling_0": "fail",
    "exclusive_gating_bg0": "fail",
    "exclusive_gating_bg-6": "8.70",
    "exclusive_gating_bg-7": "9.81",
    "shortcut_only_gating_bg0": "12.86",
    "shortcut_only_gating_bg-6": "6.91",
    "conv1x1": "12.22",
    "dropout_0.5": "fail",
}
# Identity Mappings paper, Table 2 (CIFAR-10, activation placement), by unit: (ResNet-110, ResNet-164).
UNIT_ABLATIONS = {
    "bn_after_addition": ("8.17", "6.50"),
    "relu_before_addition": ("7.84", "6.14"),
    "relu_only_preactivation": ("6.71", "5.91"),
}
# Identity Mappings paper, Table 3: CIFAR-10 ResNet-110 of 1-layer units, by unit.
ONE_LAYER_UNITS = {"original": "9.90", "full_preactivation": "8.91"}
# ResNet paper, Table 6: its ResNet-110 row is the best of 5 runs (mean +- std), where PAPER_ERRORS holds the
# Identity Mappings paper's median.
RESNET110_TABLE6 = "6.43 (6.61±0.16)"
# ResNet paper, Table 3 (ImageNet top-1, 10-crop): ResNet-34 by shortcut option (A zero padding, B
# projections where dimensions change, C projections everywhere).
RESNET34_OPTIONS = {"A": "25.03", "B": "24.52", "C": "24.19"}
