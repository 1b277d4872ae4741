"""ResNet and pre-activation ResNet builders with the keras.applications signature.

The architecture is data: a layout (CIFAR or ImageNet stem, stage widths and strides), a depth that
decides the units per stage, a unit order (Fig. 4) and a shortcut type (Fig. 2). ``build_resnet`` is
the one core builder; ``ResNet110``, ``PreActResNet200`` and the rest are one line each in
``ARCHITECTURES``.

Layer names follow keras.applications (``conv1_conv``, ``conv3_block2``, ``post_bn``,
``predictions``), so weight files stay loadable.
"""

import fnmatch
import inspect
import numbers
import os

import keras

from keras_preresnet import defaults, features
from keras_preresnet import layers as units
from keras_preresnet import preprocessing
from keras_preresnet import looped_models
from keras_preresnet import stages as stage_loops
from keras_preresnet.datasets import DATASETS
from keras_preresnet.layers import TorchConv2D, batch_norm
from keras_preresnet.pretrained import weights as weights_lib
from keras_preresnet.published import PAPER_ERRORS  # noqa: F401 (models.PAPER_ERRORS, as before)

CIFAR = "cifar"
IMAGENET = "imagenet"

# Stage widths (inner widths of bottlenecks) and strides; ImageNet units per stage (ResNet paper Table 1).
LAYOUTS = {
    CIFAR: dict(widths=(16, 32, 64), strides=(1, 2, 2), min_size=8,
                default_size=DATASETS["cifar10"].image_size, classes=DATASETS["cifar10"].classes),
    IMAGENET: dict(widths=(64, 128, 256, 512), strides=(1, 2, 2, 2), min_size=32,
                   default_size=DATASETS["imagenet2012"].image_size, classes=DATASETS["imagenet2012"].classes),
}
IMAGENET_UNITS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# Convolutions per unit, and so the depth 2 + convs * units_per_stage * 3 of a CIFAR net.
CONVS_PER_UNIT = {"basic": 2, "bottleneck": 3, "one_layer": 1}

# The named models: one line each.
ARCHITECTURES = {
    "resnet20": dict(depth=20, unit="original", layout=CIFAR),
    "resnet32": dict(depth=32, unit="original", layout=CIFAR),
    "resnet44": dict(depth=44, unit="original", layout=CIFAR),
    "resnet56": dict(depth=56, unit="original", layout=CIFAR),
    "resnet110": dict(depth=110, unit="original", layout=CIFAR),
    "resnet164": dict(depth=164, unit="original", layout=CIFAR),
    "resnet1001": dict(depth=1001, unit="original", layout=CIFAR),
    "resnet1202": dict(depth=1202, unit="original", layout=CIFAR),
    # The ResNet paper's plain nets: its ResNets without shortcuts (Fig. 3 middle; Sec. 4.2).
    "plain20": dict(depth=20, unit="plain", layout=CIFAR),
    "plain32": dict(depth=32, unit="plain", layout=CIFAR),
    "plain44": dict(depth=44, unit="plain", layout=CIFAR),
    "plain56": dict(depth=56, unit="plain", layout=CIFAR),
    "plain110": dict(depth=110, unit="plain", layout=CIFAR),
    "preact_resnet110": dict(depth=110, unit="full_preactivation", layout=CIFAR),
    "preact_resnet164": dict(depth=164, unit="full_preactivation", layout=CIFAR),
    "preact_resnet1001": dict(depth=1001, unit="full_preactivation", layout=CIFAR),
    "resnet18": dict(depth=18, unit="original", layout=IMAGENET),
    "resnet34": dict(depth=34, unit="original", layout=IMAGENET),
    "resnet50": dict(depth=50, unit="original", layout=IMAGENET),
    "resnet101": dict(depth=101, unit="original", layout=IMAGENET),
    "resnet152": dict(depth=152, unit="original", layout=IMAGENET),
    "resnet200": dict(depth=200, unit="original", layout=IMAGENET),
    "plain18": dict(depth=18, unit="plain", layout=IMAGENET),
    "plain34": dict(depth=34, unit="plain", layout=IMAGENET),
    "preact_resnet18": dict(depth=18, unit="full_preactivation", layout=IMAGENET),
    "preact_resnet34": dict(depth=34, unit="full_preactivation", layout=IMAGENET),
    "preact_resnet50": dict(depth=50, unit="full_preactivation", layout=IMAGENET),
    "preact_resnet101": dict(depth=101, unit="full_preactivation", layout=IMAGENET),
    "preact_resnet152": dict(depth=152, unit="full_preactivation", layout=IMAGENET),
    "preact_resnet200": dict(depth=200, unit="full_preactivation", layout=IMAGENET),
}


def stage_plan(depth, layout, form=None):
    """Returns ``(form, units_per_stage)`` for a depth, e.g. ``('bottleneck', (18, 18, 18))`` for 164."""
    units.check_choice("layout", layout, LAYOUTS)
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
        raise ValueError(f"`depth` must be an integer (the number of weighted layers); received depth={depth!r}.")
    depth = int(depth)
    if layout == IMAGENET:
        if depth not in IMAGENET_UNITS:
            raise ValueError(
                f"ImageNet ResNets exist for depths {sorted(IMAGENET_UNITS)}; received depth={depth!r}."
            )
        default_form, units_per_stage = IMAGENET_UNITS[depth]
        if form not in (None, default_form):
            raise ValueError(f"ImageNet ResNet-{depth} is a {default_form} network; received form={form!r}.")
        return default_form, units_per_stage
    if form is None:
        # The paper's 164- and 1001-layer CIFAR nets are bottleneck nets (depth 9n+2); the others basic.
        form = "bottleneck" if depth >= 164 and (depth - 2) % 9 == 0 else "basic"
    units.check_choice("form", form, CONVS_PER_UNIT)
    per_stage = 3 * CONVS_PER_UNIT[form]
    if depth < per_stage + 2 or (depth - 2) % per_stage:
        raise ValueError(
            f"A CIFAR ResNet of {form} units has depth {per_stage}n+2 (n >= 1); received depth={depth!r}."
        )
    n = (depth - 2) // per_stage
    return form, (n, n, n)


def _is_count(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _check_units_per_stage(units_per_stage, layout):
    stages = len(LAYOUTS[layout]["widths"])
    units_per_stage = tuple(units_per_stage) if isinstance(units_per_stage, (tuple, list)) else (units_per_stage,)
    if len(units_per_stage) != stages or not all(_is_count(n) for n in units_per_stage):
        raise ValueError(
            f"`units_per_stage` must be {stages} positive integers for a {layout} ResNet; received "
            f"units_per_stage={units_per_stage!r}."
        )
    return units_per_stage


def _unit_settings(layout, unit, form):
    """Shortcut and stride conventions of the reference implementations for a layout."""
    preactivation = units.UNITS[unit].preactivates()
    if layout == CIFAR and form != "bottleneck":
        # ResNet paper Sec. 4.2: option A (parameter-free) shortcuts on CIFAR. The pre-activation units
        # follow fb.resnet.torch's preresnet.lua ('both_preact'): a stage's first unit pre-activates
        # before the split, so its shortcut carries the pre-activated input.
        return dict(projection="A", projection_bn=True, stride_position="first",
                    first_unit_from="preactivated" if preactivation else "raw")
    if layout == CIFAR:
        if preactivation:
            # The paper's CIFAR code: the widening unit pre-activates once and projects that.
            return dict(projection="B", projection_bn=False, stride_position="first",
                        first_unit_from="preactivated")
        return dict(projection="B", projection_bn=True, stride_position="first", first_unit_from="raw")
    # ImageNet: pre-act nets follow the released fb.resnet.torch ResNet-200 (stride on the 3x3,
    # conv-BN projection of the raw input); original nets follow the ResNet paper's models, whose
    # stride sits on the first 1x1 (Table 1 FLOPs).
    stride = "3x3" if preactivation else "first"
    return dict(projection="B", projection_bn=True, stride_position=stride, first_unit_from="raw")


def _input_shape(input_shape, layout, include_top, weights):
    size = LAYOUTS[layout]["default_size"]
    min_size = LAYOUTS[layout]["min_size"]
    if input_shape is None:
        return (size, size, 3) if include_top else (None, None, 3)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or not all(
            dim is None or _is_count(dim) for dim in input_shape):
        raise ValueError(
            "`input_shape` must be a tuple (height, width, channels) of positive integers or None; "
            f"received input_shape={input_shape!r}."
        )
    shape = tuple(input_shape)
    if weights is not None and shape[-1] != 3:
        raise ValueError(f"Pretrained weights expect 3 input channels; received input_shape={input_shape!r}.")
    for dim in shape[:2]:
        if dim is not None and dim < min_size:
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size} for a {layout} ResNet; "
                f"received input_shape={input_shape!r}."
            )
    if shape[-1] is None or shape[-1] < 1:
        raise ValueError(f"The channel dimension must be known; received input_shape={input_shape!r}.")
    return shape


def _check_shortcut_options(shortcut, options):
    if options is None:
        return
    init = inspect.signature(units.SHORTCUTS[shortcut].__init__).parameters
    accepted = [name for name in init if name not in ("self", "filters", "strides", "kwargs")]
    if not isinstance(options, dict) or any(key not in accepted for key in options):
        raise ValueError(
            f"`shortcut_options` must be a dict of the {shortcut!r} shortcut's arguments ({', '.join(accepted) or 'none'}); "
            f"received shortcut_options={options!r}."
        )


def resolve_architecture(name):
    """``'PreActResNet200'`` or ``'preact_resnet200'`` (any case) -> ``'preact_resnet200'``, a key of ``ARCHITECTURES``."""
    by_name = {key.lower(): key for key in ARCHITECTURES}
    by_name.update({public_name(key).lower(): key for key in ARCHITECTURES})
    key = by_name.get(str(name).lower())
    if key is None:
        known = ", ".join(public_name(key) for key in ARCHITECTURES)
        raise ValueError(f"Unknown model {name!r}; known models: {known}.")
    return key


def named_architecture(depth, unit, layout, form=None):
    """The key of ``ARCHITECTURES`` with this structure (and the depth's own unit form), or None."""
    for key, spec in ARCHITECTURES.items():
        if (spec["depth"], spec["unit"], spec["layout"]) == (depth, unit, layout):
            return key if form in (None, stage_plan(depth, layout)[0]) else None
    return None


def _check_weights(weights, include_top, classes, classifier_activation, architecture):
    if weights is None:
        return
    if weights == "imagenet":
        if architecture not in weights_lib.PRETRAINED:
            raise ValueError(
                f"No ImageNet weights are published for {architecture or 'this structure'}; "
                f"they exist for {sorted(weights_lib.PRETRAINED)} as built by their named builders. "
                "Use weights=None or a weights file."
            )
        if include_top and classes != 1000:
            raise ValueError(
                f"With weights='imagenet' and include_top=True, `classes` must be 1000; received "
                f"classes={classes}. Use include_top=False to put your own classifier on top."
            )
        if include_top and classifier_activation not in (None, "softmax"):
            raise ValueError(
                "With pretrained weights and include_top=True, `classifier_activation` must be None or "
                f"'softmax'; received classifier_activation={classifier_activation!r}."
            )
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.path.exists(weights):
        raise ValueError(
            "`weights` must be None, 'imagenet' or the path of an existing weights file; "
            f"received weights={weights!r}."
        )


def _preprocessing_layer(include_preprocessing, layout, classes, input_shape):
    """The ``ImagePreprocessing`` layer for ``include_preprocessing`` (True: the layout's training set),
    sized to the network's square input, or None."""
    if include_preprocessing is False or include_preprocessing is None:
        return None
    name = preprocessing.default_preprocessing(layout, classes) if include_preprocessing is True else include_preprocessing
    if name not in preprocessing.PREPROCESSING:
        raise ValueError(
            f"`include_preprocessing` must be True, False or one of {tuple(preprocessing.PREPROCESSING)}; "
            f"received include_preprocessing={include_preprocessing!r}."
        )
    height, width, channels = input_shape
    if height is None and width is None:
        height = width = LAYOUTS[layout]["default_size"]
    if height != width or channels != 3:
        raise ValueError(
            "With include_preprocessing, `input_shape` is the network's square RGB input after "
            f"preprocessing; received input_shape={input_shape!r} (e.g. (320, 320, 3))."
        )
    return preprocessing.ImagePreprocessing(name, height, name="preprocessing")


def _apply_ops(sequence, x, prefix):
    """Stem and head ops as named layers (``<prefix>_bn``, ``<prefix>_relu``)."""
    steps = [(op, batch_norm(f"{prefix}_bn") if op == "bn" else keras.layers.ReLU(name=f"{prefix}_relu"))
             for op in sequence]
    return units.apply_ops(steps, x)


def stem(x, layout, unit_cls, conv_options):
    """The first convolution and what follows it: ImageNet conv-BN-ReLU-max-pool (ResNet paper
    Table 1), CIFAR a 3x3 convolution and the unit order's ``stem_tail``."""
    if layout == IMAGENET:
        x = TorchConv2D(64, 7, strides=2, name="conv1_conv", **conv_options)(x)
        x = _apply_ops(("bn", "relu"), x, "conv1")
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = TorchConv2D(16, 3, name="conv1_conv", **conv_options)(x)
    return _apply_ops(unit_cls.stem_tail, x, "conv1")


def stages(x, layout, unit_cls, form, units_per_stage, settings, unit_options, drop_path_rate=0.0,
           scan_units="auto", remat=False):
    """The residual units, stage by stage (``conv<stage>_block<unit>``); the first unit of a stage
    changes the width and stride. ``drop_path_rate``: stochastic depth, ``unit_drop_path_rates``;
    ``scan_units``/``remat``: see ``keras_preresnet.stages``."""
    widths, strides = LAYOUTS[layout]["widths"], LAYOUTS[layout]["strides"]
    drop_rates = iter(unit_drop_path_rates(drop_path_rate, sum(units_per_stage)))
    for stage, (width, stride, units) in enumerate(zip(widths, strides, units_per_stage)):
        stage_units = [
            unit_cls(
                width,
                strides=stride if j == 0 else 1,
                form=form,
                projection=settings["projection"],
                projection_bn=settings["projection_bn"],
                stride_position=settings["stride_position"],
                shortcut_from=settings["first_unit_from"] if j == 0 else "raw",
                name=f"conv{stage + 2}_block{j + 1}",
                drop_path_rate=next(drop_rates),
                **unit_options,
            )
            for j in range(units)
        ]
        x = stage_loops.apply_stage(stage_units, x, scan_units=scan_units, remat=remat)
    return x


def head(x, unit_cls, include_top, pooling, classes, classifier_activation, kernel_regularizer):
    """The unit order's ``head`` ops, then the classifier (``include_top``) or the chosen pooling."""
    x = _apply_ops(unit_cls.head, x, "post")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return keras.layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_regularizer=kernel_regularizer,
            kernel_initializer=defaults.classifier_initializer(),
            bias_initializer="zeros",
            name="predictions",
            dtype=_classifier_dtype(),
        )(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _classifier_dtype():
    # Logits and softmax stay in float32 under mixed precision.
    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype in ("float16", "bfloat16") else None


def build_resnet(
    depth,
    unit="full_preactivation",
    shortcut="identity",
    shortcut_options=None,
    *,
    layout=CIFAR,
    form=None,
    projection=None,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    name=None,
    kernel_regularizer=None,
    use_bias=False,
    units_per_stage=None,
    drop_path_rate=0.0,
    features_only=False,
    out_indices=None,
    feature_tap="normalized",
    scan_units="auto",
    remat=False,
    include_preprocessing=False,
):
    """Builds a ResNet of any depth, unit order (Fig. 4) and shortcut type (Fig. 2).

    Args:
        depth: number of weighted layers: 6n+2 (basic), 9n+2 (bottleneck) or 3n+2 (1-layer) on
            CIFAR; 18, 34, 50, 101, 152 or 200 on ImageNet.
        unit: ``'plain'`` (no shortcut), ``'original'``, ``'bn_after_addition'``, ``'relu_before_addition'``,
            ``'relu_only_preactivation'`` or ``'full_preactivation'``.
        shortcut: ``'identity'``, ``'constant_scaling'``, ``'exclusive_gating'``,
            ``'shortcut_only_gating'``, ``'conv1x1'`` or ``'dropout'``; ``shortcut_options`` holds its
            arguments (e.g. ``{'gate_bias': -6}``).
        layout: ``'cifar'`` (3x3 stem, 16/32/64 widths) or ``'imagenet'`` (7x7 stem, 64..512 widths).
        form: ``'basic'``, ``'bottleneck'`` or ``'one_layer'``; by default the paper's form for the depth.
        projection: dimension matching ``'A'``, ``'B'`` or ``'C'``; by default A for basic CIFAR nets,
            B otherwise.
        include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name:
            as in ``keras.applications``. ``weights`` is None, ``'imagenet'`` or a weights file.
        kernel_regularizer: regulariser of every convolution and classifier kernel (weight decay).
        use_bias: give every convolution a bias.
        units_per_stage: units per stage, overriding the depth's (e.g. ``(1, 1, 1, 1)`` for a shallow
            ImageNet-layout net in tests); the depth still picks the unit form.
        drop_path_rate: stochastic depth for training: unit ``l`` of ``L`` drops its residual branch
            with probability ``drop_path_rate * l / L`` (``unit_drop_path_rates``); 0, the default, is
            the paper's network.
        features_only, out_indices, feature_tap: with ``features_only``, a model without classifier
            that returns its feature levels ``out_indices`` (timm's convention: 0 is the stem, 1.. the
            stages; default all) and lists them in its ``feature_info``; see ``keras_preresnet.features``
            (``feature_tap``: ``'normalized'`` or ``'raw'``).
        scan_units: run the units after each stage's first as one loop (``keras_preresnet.stages``):
            ``'auto'`` (stages of at least ``stages.AUTO_MIN_UNITS`` units), True or False. Looping
            changes neither the function nor the weight files, only compile time and program size.
        remat: rematerialise looped units in the backward pass (keeps only unit inputs).
        include_preprocessing: True (the layout's training set: ImageNet, or CIFAR-10/100 by
            ``classes``), ``'imagenet'``, ``'cifar10'`` or ``'cifar100'``: the model takes raw RGB
            images (0-255, any size, ``[batch, None, None, 3]``) and brings them to ``input_shape``
            (default: the layout's size) with ``keras_preresnet.preprocessing.preprocess``.

    ``weights='imagenet'`` is found from the structure: it is accepted where depth, unit and layout
    are those of a network in ``weights.PRETRAINED`` and nothing else departs from it.
    """
    units.check_choice("unit", unit, units.UNITS)
    units.check_choice("shortcut", shortcut, units.SHORTCUTS)
    units.check_choice("layout", layout, LAYOUTS)
    stage_loops.check_scan_units(scan_units)
    if not units.UNITS[unit].has_shortcut and (shortcut != "identity" or shortcut_options or projection):
        raise ValueError(
            f"A {unit} net has no shortcuts: leave `shortcut`, `shortcut_options` and `projection` at their "
            f"defaults; received shortcut={shortcut!r}, shortcut_options={shortcut_options!r}, "
            f"projection={projection!r}."
        )
    _check_shortcut_options(shortcut, shortcut_options)
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; received include_top={include_top!r}.")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'; received pooling={pooling!r}.")
    if features_only:
        if pooling is not None:
            raise ValueError(f"A features_only model returns unpooled levels; received pooling={pooling!r}.")
        include_top = False
    elif out_indices is not None or feature_tap != "normalized":
        raise ValueError("`out_indices` and `feature_tap` apply to features_only=True models.")
    architecture = named_architecture(depth, unit, layout, form)
    if (shortcut, shortcut_options, projection, units_per_stage, use_bias) != ("identity", None, None, None, False):
        architecture = None  # pretrained weights are of the named structure only
    form, depth_units = stage_plan(depth, layout, form)
    units_per_stage = depth_units if units_per_stage is None else _check_units_per_stage(units_per_stage, layout)
    classes = LAYOUTS[layout]["classes"] if classes is None else classes
    if include_top and not _is_count(classes):
        raise ValueError(f"`classes` must be a positive integer; received classes={classes!r}.")
    _check_weights(weights, include_top, classes, classifier_activation, architecture)
    settings = _unit_settings(layout, unit, form)
    if projection is not None:
        units.check_choice("projection", projection, units.PROJECTIONS)
        settings["projection"] = projection
    input_shape = _input_shape(input_shape, layout, include_top, weights)
    preprocess = _preprocessing_layer(include_preprocessing, layout, classes, input_shape)
    if preprocess is not None:
        input_shape = (None, None, 3)

    if input_tensor is None:
        img_input = keras.layers.Input(shape=input_shape)
    elif not keras.backend.is_keras_tensor(input_tensor):
        img_input = keras.layers.Input(tensor=input_tensor, shape=input_shape)
    else:
        img_input = input_tensor

    unit_cls = units.UNITS[unit]
    conv_options = dict(use_bias=use_bias, kernel_regularizer=kernel_regularizer)
    x = stem(img_input if preprocess is None else preprocess(img_input), layout, unit_cls, conv_options)
    x = stages(x, layout, unit_cls, form, units_per_stage, settings,
               dict(shortcut=shortcut, shortcut_options=shortcut_options, **conv_options), drop_path_rate,
               scan_units, remat)
    x = head(x, unit_cls, include_top, pooling, classes, classifier_activation, kernel_regularizer)

    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = looped_models.functional_model(inputs, x, name=name or _default_name(unit, depth, layout))

    if weights is not None:
        weights_lib.load_into(model, weights, architecture)
    if features_only:
        return features.feature_extractor(model, out_indices, tap=feature_tap)
    return model


def unit_drop_path_rates(drop_path_rate, num_units):
    """Per-unit drop rates of stochastic depth: linear in depth, ``rate * l / L`` for unit ``l`` of ``L``
    (Huang et al. 2016, Eqn. 4: survival ``1 - l / L * (1 - p_L)``), so the last unit drops most."""
    if not 0 <= drop_path_rate < 1:
        raise ValueError(f"`drop_path_rate` must be in [0, 1); received drop_path_rate={drop_path_rate!r}.")
    return [drop_path_rate * (index + 1) / num_units for index in range(num_units)]


def _default_name(unit, depth, layout):
    stem = {"original": "resnet", "full_preactivation": "preact_resnet", "plain": "plain"}.get(unit, f"{unit}_resnet")
    suffix = "" if layout == CIFAR or depth in IMAGENET_UNITS else f"_{layout}"
    return f"{stem}{depth}{suffix}"


def build_named(architecture, **kwargs):
    """Builds a model of ``ARCHITECTURES`` by its key or public name, e.g. ``build_named('PreActResNet164')``;
    ``kwargs`` are those of ``build_resnet``."""
    spec = ARCHITECTURES[resolve_architecture(architecture)]
    return build_resnet(spec["depth"], unit=spec["unit"], layout=spec["layout"], **kwargs)


def _named(architecture, public_name):
    spec = ARCHITECTURES[architecture]

    def builder(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=None,
        classifier_activation="softmax",
        name=None,
        **kwargs,
    ):
        return build_named(
            architecture, include_top=include_top, weights=weights, input_tensor=input_tensor,
            input_shape=input_shape, pooling=pooling, classes=classes,
            classifier_activation=classifier_activation, name=name, **kwargs,
        )

    kind = {"full_preactivation": "pre-activation ResNet", "plain": "plain net"}.get(spec["unit"], "original ResNet")
    builder.__name__ = builder.__qualname__ = public_name
    builder.__doc__ = (
        f"{spec['layout'].capitalize()} {kind}-{spec['depth']} (keras.applications signature; "
        f"default input {LAYOUTS[spec['layout']]['default_size']}x{LAYOUTS[spec['layout']]['default_size']}, "
        f"classes={LAYOUTS[spec['layout']]['classes']})."
    )
    return builder


def list_models(filter=None, pretrained=False):
    """The named architectures (keys of ``ARCHITECTURES``, e.g. ``'preact_resnet200'``) in table order.

    ``filter`` is a shell pattern (``'preact_*'``); ``pretrained=True`` keeps those with published
    weights, whose records ``keras_preresnet.pretrained.weights.PRETRAINED`` holds.
    """
    names = list(ARCHITECTURES)
    if filter is not None:
        names = [name for name in names if fnmatch.fnmatch(name, str(filter).lower())]
    return [name for name in names if name in weights_lib.PRETRAINED] if pretrained else names


def public_name(architecture):
    """``'preact_resnet200'`` -> ``'PreActResNet200'``, ``'plain20'`` -> ``'PlainNet20'``."""
    return architecture.replace("preact_resnet", "PreActResNet").replace("resnet", "ResNet").replace("plain", "PlainNet")


ResNet20 = _named("resnet20", "ResNet20")
ResNet32 = _named("resnet32", "ResNet32")
ResNet44 = _named("resnet44", "ResNet44")
ResNet56 = _named("resnet56", "ResNet56")
ResNet110 = _named("resnet110", "ResNet110")
ResNet164 = _named("resnet164", "ResNet164")
ResNet1001 = _named("resnet1001", "ResNet1001")
ResNet1202 = _named("resnet1202", "ResNet1202")
PreActResNet110 = _named("preact_resnet110", "PreActResNet110")
PreActResNet164 = _named("preact_resnet164", "PreActResNet164")
PreActResNet1001 = _named("preact_resnet1001", "PreActResNet1001")
ResNet18 = _named("resnet18", "ResNet18")
ResNet34 = _named("resnet34", "ResNet34")
ResNet50 = _named("resnet50", "ResNet50")
ResNet101 = _named("resnet101", "ResNet101")
ResNet152 = _named("resnet152", "ResNet152")
ResNet200 = _named("resnet200", "ResNet200")
PlainNet20 = _named("plain20", "PlainNet20")
PlainNet32 = _named("plain32", "PlainNet32")
PlainNet44 = _named("plain44", "PlainNet44")
PlainNet56 = _named("plain56", "PlainNet56")
PlainNet110 = _named("plain110", "PlainNet110")
PlainNet18 = _named("plain18", "PlainNet18")
PlainNet34 = _named("plain34", "PlainNet34")
PreActResNet18 = _named("preact_resnet18", "PreActResNet18")
PreActResNet34 = _named("preact_resnet34", "PreActResNet34")
PreActResNet50 = _named("preact_resnet50", "PreActResNet50")
PreActResNet101 = _named("preact_resnet101", "PreActResNet101")
PreActResNet152 = _named("preact_resnet152", "PreActResNet152")
PreActResNet200 = _named("preact_resnet200", "PreActResNet200")
