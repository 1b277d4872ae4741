"""Feature pyramids of the ResNets, for detection and segmentation necks.

Two conventions over one set of levels:

* keras-hub's ``pyramid_outputs``: a dict of the stages' outputs keyed ``"P<l>"``, the stage's stride to
  the input being ``2**l``. ImageNet layouts give ``P2``..``P5`` (strides 4..32); CIFAR layouts, whose
  stem keeps the full resolution, give ``P0``, ``P1``, ``P2`` (strides 1, 2, 4).
* timm's ``features_only`` / ``out_indices`` / ``feature_info``: index 0 is the stem (ImageNet: the
  stride-2 ``conv1`` activation before max pooling, timm's ``act1``; CIFAR: the stride-1 stem), indices
  1.. are the stages; each ``feature_info`` entry gives the level's ``num_chs`` (channels), ``reduction``
  (stride), ``module`` (what is tapped), ``index`` and ``level`` (``"P<l>"``, ``"stem"`` for index 0).

Which tensor is tapped (``tap``): a pre-activation stage ends in a raw sum ``x_{l+1} = x_l + F(x_l)``
(Eqn. 4) that no BatchNorm has normalised; what reads it is the next unit's pre-activation (BN-ReLU)
or, after the last stage, the head's ``post_bn``/``post_relu``. The default ``tap="normalized"`` gives each
level as its reader sees it: the first unit of the next stage applies its own pre-activation (its
BatchNorm, so pretrained statistics apply; ``module`` ``"conv3_block1/preactivation"``), and the last
level is the head's output (``post_relu``). For the original unit orders a stage's output is already
what the next unit convolves, so both taps give the same tensor. ``tap="raw"`` gives the stage sums, as
keras-hub's and timm's ResNetV2 features do.

In training mode a tapped pre-activation BatchNorm runs twice on the same tensor (in its unit and in the
tap), so its moving statistics move twice per step (momentum ``m**2`` instead of ``m``).
"""

import math

import keras

from keras_preresnet import layers as units

TAPS = ("normalized", "raw")
# The stem's last layer, whichever the unit order has: conv-BN-ReLU (ImageNet, original CIFAR), conv-BN,
# or the bare conv of a pre-activation CIFAR net.
STEM_OUTPUTS = ("conv1_relu", "conv1_bn", "conv1_conv")
HEAD_OUTPUTS = ("post_relu", "post_bn")  # the head's BN-ReLU after the last stage (pre-activation nets)
STEM_POOL = "pool1_pool"
STEM = "stem"  # the stem's ``level`` in feature_info: on CIFAR it has the first stage's stride


def _layer(model, names):
    """The first of ``names`` that is a layer of ``model``, or None."""
    found = {layer.name: layer for layer in model.layers}
    return next((found[name] for name in names if name in found), None)


def _stages(model):
    """The residual units grouped by stage, in order: ``[[conv2_block1, ...], [conv3_block1, ...], ...]``."""
    stages = {}
    for layer in model.layers:
        if isinstance(layer, units.ResidualUnit) and layer.name.startswith("conv") and "_block" in layer.name:
            stages.setdefault(int(layer.name[4:].split("_block")[0]), []).append(layer)
    if not stages or _layer(model, STEM_OUTPUTS) is None:
        raise ValueError(
            f"Model {model.name!r} has no stem and residual units named conv1_* and conv<stage>_block<unit>; "
            "feature pyramids need a model of keras_preresnet's builders."
        )
    return [stages[key] for key in sorted(stages)]


def _stride(layer):
    strides = layer.strides
    return strides[0] if isinstance(strides, (tuple, list)) else strides


def _levels(model, tap):
    """Per level (stem, then each stage): ``(info dict, tensor)``."""
    if tap not in TAPS:
        raise ValueError(f"`tap` must be one of {list(TAPS)}; received tap={tap!r}.")
    stages = _stages(model)
    stem = _layer(model, STEM_OUTPUTS)
    pool = _layer(model, (STEM_POOL,))
    reduction = _stride(model.get_layer("conv1_conv"))
    # (module, tensor, channels, reduction, the unit that reads it next or None)
    levels = [(stem.name, stem.output, stem.output.shape[-1], reduction, None if pool else stages[0][0])]
    reduction *= _stride(pool) if pool else 1
    for index, stage in enumerate(stages):
        reduction *= stage[0].strides
        reader = stages[index + 1][0] if index + 1 < len(stages) else None
        last = stage[-1]
        levels.append((last.name, last.output, last.output_filters, reduction, reader))
    result = []
    for index, (module, tensor, channels, stride, reader) in enumerate(levels):
        if tap == "normalized" and reader is not None and reader.n_preactivation:
            module, tensor = f"{reader.name}/preactivation", reader.preactivate(tensor)
        elif tap == "normalized" and index == len(levels) - 1:
            head = _layer(model, HEAD_OUTPUTS)
            if head is not None:
                module, tensor = head.name, head.output
        level = f"P{int(math.log2(stride))}" if index else STEM
        info = dict(index=index, level=level, module=module, num_chs=int(channels), reduction=int(stride))
        result.append((info, tensor))
    return result


def feature_info(model, tap="normalized"):
    """timm's ``feature_info`` of a builder's model: one dict per level (stem first) with ``index``,
    ``level``, ``module``, ``num_chs`` and ``reduction``."""
    return [info for info, _ in _levels(model, tap)]


def pyramid_outputs(model, tap="normalized"):
    """keras-hub's ``pyramid_outputs`` of a builder's model: ``{"P2": tensor, ..., "P5": tensor}`` on
    ImageNet layouts, ``{"P0", "P1", "P2"}`` on CIFAR ones. ``keras.Model(model.input, pyramid_outputs(model))``
    is a backbone that returns the dict."""
    return {info["level"]: tensor for info, tensor in _levels(model, tap)[1:]}


def feature_extractor(model, out_indices=None, tap="normalized"):
    """timm's ``features_only`` model: returns the list of levels ``out_indices`` (default: all, the stem
    being 0); its ``feature_info`` lists theirs."""
    levels = _levels(model, tap)
    indices = tuple(range(len(levels))) if out_indices is None else tuple(out_indices)
    if not indices or any(not isinstance(i, int) or not -len(levels) <= i < len(levels) for i in indices):
        raise ValueError(
            f"`out_indices` must be indices of the {len(levels)} levels (0: stem, 1-{len(levels) - 1}: stages); "
            f"received out_indices={out_indices!r}."
        )
    chosen = [levels[i] for i in indices]
    extractor = keras.Model(model.input, [tensor for _, tensor in chosen], name=f"{model.name}_features")
    extractor.feature_info = [info for info, _ in chosen]
    return extractor
