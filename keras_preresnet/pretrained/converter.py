"""Conversion of fb.resnet.torch Torch7 checkpoints (the released ``resnet-200.t7``) into Keras weights.

The converter walks the Torch module tree and the Keras model side by side: the Torch tree is read as a
sequence of leaves (convolution, BatchNorm, ReLU, pooling, Linear) and residual units (a ``ConcatTable``
of residual branch and shortcut followed by ``CAddTable``); the Keras model as its layers in order,
with every ``ResidualUnit`` opened into its branch and shortcut. Each pair must agree in kind, kernel,
stride, padding, channel counts and BatchNorm epsilon; any disagreement is a ``ConversionError`` naming
the Torch module path and the Keras layer, raised before a single weight is assigned.

Conv biases (docs/pretrained.md): a bias followed by a BatchNorm is folded into its moving mean
(``BN(x + b)`` with mean ``m`` equals ``BN(x)`` with mean ``m - b``); one with no BatchNorm after it
is copied into a Keras conv that has a bias, dropped only if it is exactly zero, and otherwise refused.

The command line is ``python -m keras_preresnet.convert`` (``keras_preresnet/convert.py``).
"""

import math
import os

import keras
import numpy as np

from keras_preresnet.pretrained import torch7
from keras_preresnet import looped_models
from keras_preresnet.layers import ResidualUnit, TorchConv2D

CONV = ("nn.SpatialConvolution", "cudnn.SpatialConvolution", "nn.SpatialConvolutionMM")
BATCH_NORM = ("nn.SpatialBatchNormalization", "cudnn.SpatialBatchNormalization", "nn.BatchNormalization")
RELU = ("nn.ReLU", "cudnn.ReLU")
MAX_POOL = ("nn.SpatialMaxPooling", "cudnn.SpatialMaxPooling")
AVG_POOL = ("nn.SpatialAveragePooling", "cudnn.SpatialAveragePooling")
LINEAR = ("nn.Linear",)
# Modules that pass their input through unchanged at inference (nn.View flattens N x C x 1 x 1).
PASS_THROUGH = ("nn.Identity", "nn.Copy", "nn.View", "nn.Reshape")
KINDS = {**{c: "conv" for c in CONV}, **{c: "bn" for c in BATCH_NORM}, **{c: "relu" for c in RELU},
         **{c: "maxpool" for c in MAX_POOL}, **{c: "avgpool" for c in AVG_POOL},
         **{c: "linear" for c in LINEAR}}


class ConversionError(ValueError):
    """The Torch checkpoint does not fit the Keras model (or is not a checkpoint of this kind)."""


class _Torch:
    """One node of the flattened Torch tree: a leaf module, or a residual unit (branch + shortcut)."""

    def __init__(self, kind, path, module=None, branch=None, shortcut=None):
        self.kind, self.path, self.module = kind, path, module
        self.branch, self.shortcut = branch, shortcut

    def __str__(self):
        name = self.module.typename if self.module is not None else "nn.ConcatTable + nn.CAddTable"
        return f"Torch module {self.path} ({name})"


class _Keras:
    """One node of the Keras side: a layer (or a ReLU inside a unit, ``layer`` None) and its kind."""

    def __init__(self, kind, layer, name, padding=0):
        self.kind, self.layer, self.name, self.padding = kind, layer, name, padding

    def __str__(self):
        return f"Keras layer {self.name!r}"


# --------------------------------------------------------------------------------------------------
# The Torch side
# --------------------------------------------------------------------------------------------------


def _children(module, path):
    try:
        return torch7.sequence(module.get("modules"))
    except torch7.Torch7Error:
        raise ConversionError(f"Torch module {path} ({module.typename}) has a malformed `modules` list.") from None


def _flatten(module, path):
    """The Torch tree under ``module`` as a list of ``_Torch`` nodes in execution order."""
    if not isinstance(module, torch7.TorchObject):
        raise ConversionError(f"{path} is a {type(module).__name__}, not a Torch nn module.")
    name = module.typename
    if name in PASS_THROUGH:
        return []
    if name in KINDS:
        return [_Torch(KINDS[name], path, module)]
    if name == "nn.DataParallelTable":
        # A multi-GPU wrapper: every replica is the same network.
        replicas = _children(module, path)
        if not replicas:
            raise ConversionError(f"Torch module {path} (nn.DataParallelTable) holds no network.")
        return _flatten(replicas[0], f"{path}.modules[1]")
    if name != "nn.Sequential":
        raise ConversionError(
            f"Torch module {path} is a {name}, which a pre-activation ResNet checkpoint does not contain; "
            "this is not a file of the supported fb.resnet.torch layout."
        )
    nodes = []
    children = _children(module, path)
    i = 0
    while i < len(children):
        child, child_path = children[i], f"{path}.modules[{i + 1}]"
        if isinstance(child, torch7.TorchObject) and child.typename == "nn.ConcatTable":
            following = children[i + 1] if i + 1 < len(children) else None
            if not (isinstance(following, torch7.TorchObject) and following.typename == "nn.CAddTable"):
                raise ConversionError(
                    f"Torch module {child_path} (nn.ConcatTable) is not followed by nn.CAddTable, so it is "
                    "not a residual unit."
                )
            nodes.append(_residual_unit(child, child_path))
            i += 2
            continue
        if isinstance(child, torch7.TorchObject) and child.typename == "nn.CAddTable":
            raise ConversionError(f"Torch module {child_path} (nn.CAddTable) has no nn.ConcatTable before it.")
        nodes.extend(_flatten(child, child_path))
        i += 1
    return nodes


def _residual_unit(concat, path):
    paths = [f"{path}.modules[{i + 1}]" for i in range(2)]
    children = _children(concat, path)
    if len(children) != 2:
        raise ConversionError(
            f"Torch module {path} (nn.ConcatTable) has {len(children)} paths; a residual unit has two "
            "(residual branch and shortcut)."
        )
    parts = [_flatten(child, p) for child, p in zip(children, paths)]
    convs = [sum(node.kind == "conv" for node in part) for part in parts]
    if convs[0] == convs[1]:
        raise ConversionError(
            f"Torch module {path} (nn.ConcatTable): cannot tell the residual branch from the shortcut "
            f"(both hold {convs[0]} convolutions)."
        )
    branch, shortcut = (parts[0], parts[1]) if convs[0] > convs[1] else (parts[1], parts[0])
    if any(node.kind == "unit" for node in branch + shortcut):
        raise ConversionError(f"Torch module {path} nests a residual unit inside a residual unit.")
    return _Torch("unit", path, branch=branch, shortcut=shortcut)


def _check_tree(root):
    """Refuses a module reachable twice through ``modules`` lists: a network is a tree, and a corrupt
    file's shared or cyclic references would make the conversion walk for ever."""
    seen, stack = set(), [(root, "model")]
    while stack:
        module, path = stack.pop()
        if not isinstance(module, torch7.TorchObject):
            continue
        if id(module) in seen:
            raise ConversionError(f"Torch module {path} ({module.typename}) occurs twice in the network: "
                                  "the file is corrupt.")
        seen.add(id(module))
        children = module.get("modules")
        if isinstance(children, dict):
            stack.extend((child, f"{path}.modules[{key}]") for key, child in children.items())


def _tensor(node, key, required=True):
    value = node.module.get(key)
    if value is not None and not isinstance(value, np.ndarray):
        raise ConversionError(f"{node}: `{key}` is a {type(value).__name__}, expected a tensor.")
    if isinstance(value, np.ndarray) and value.size == 0:
        value = None
    if value is None and required:
        raise ConversionError(f"{node} has no `{key}` tensor.")
    if value is not None and not np.issubdtype(value.dtype, np.floating):
        raise ConversionError(f"{node}: `{key}` is a {value.dtype} tensor, expected floating point.")
    return value


def _number(node, *keys, default=None):
    for key in keys:
        value = node.module.get(key)
        if value is not None:
            if not isinstance(value, (bool, int, float)) or not math.isfinite(value):
                raise ConversionError(f"{node}: `{key}` is {value!r:.60}, expected a finite number.")
            return value
    if default is None:
        raise ConversionError(f"{node} has no `{keys[0]}` field.")
    return default


# --------------------------------------------------------------------------------------------------
# The Keras side
# --------------------------------------------------------------------------------------------------


def _keras_nodes(model):
    nodes, padding = [], 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.ZeroPadding2D):
            (top, bottom), (left, right) = layer.padding
            if len({top, bottom, left, right}) != 1:
                raise ConversionError(f"Keras layer {layer.name!r} pads asymmetrically; Torch pads symmetrically.")
            padding = top
            continue
        if isinstance(layer, keras.layers.MaxPooling2D):
            nodes.append(_Keras("maxpool", layer, layer.name, padding))
            padding = 0
            continue
        if padding:
            raise ConversionError(f"Keras layer {layer.name!r} follows zero padding that no pooling uses.")
        if isinstance(layer, ResidualUnit):
            nodes.append(_Keras("unit", layer, layer.name))
        elif isinstance(layer, keras.layers.Conv2D):
            nodes.append(_Keras("conv", layer, layer.name))
        elif isinstance(layer, keras.layers.BatchNormalization):
            nodes.append(_Keras("bn", layer, layer.name))
        elif isinstance(layer, keras.layers.ReLU) or (
            isinstance(layer, keras.layers.Activation) and layer.activation is keras.activations.relu
        ):
            nodes.append(_Keras("relu", layer, layer.name))
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            nodes.append(_Keras("avgpool", layer, layer.name))
        elif isinstance(layer, keras.layers.Dense):
            nodes.append(_Keras("linear", layer, layer.name))
        elif isinstance(layer, keras.layers.GlobalMaxPooling2D) and layer is model.layers[-1]:
            continue  # include_top=False with pooling='max': a choice of the user, no Torch counterpart.
        else:
            raise ConversionError(
                f"Keras layer {layer.name!r} ({type(layer).__name__}) has no counterpart in an "
                "fb.resnet.torch checkpoint."
            )
    return nodes


def _unit_parts(unit):
    """The Keras unit's residual branch and shortcut as ``_Keras`` nodes."""
    if any(op.startswith("conv+") for op in unit.branch_ops_):
        raise ConversionError(
            f"Keras layer {unit.name!r} has its BatchNorms folded into its convolutions; convert into the "
            "unfolded model and fold afterwards (keras_preresnet.fold_batchnorm)."
        )
    if type(unit.combine).__name__ != "IdentityShortcut":
        raise ConversionError(
            f"Keras layer {unit.name!r} combines with a {type(unit.combine).__name__}; fb.resnet.torch "
            "units add branch and shortcut (identity)."
        )
    if unit.shortcut_from != "raw":
        raise ConversionError(
            f"Keras layer {unit.name!r} projects the pre-activated input; the released ResNet-200 "
            "projects the raw input of the unit."
        )
    branch = [_Keras(op, layer, layer.name) if layer is not None else _Keras(op, None, f"{unit.name} (ReLU)")
              for op, layer in unit.branch_steps()]
    shortcut = []
    if unit.projection_conv is not None:
        shortcut.append(_Keras("conv", unit.projection_conv, unit.projection_conv.name))
        if unit.projection_norm is not None:
            shortcut.append(_Keras("bn", unit.projection_norm, unit.projection_norm.name))
    elif unit.strides != 1 or unit.zero_pad_channels:
        shortcut.append(_Keras("option_a", None, f"{unit.name} (option A shortcut)"))
    return branch, shortcut


def _keras_padding(layer):
    k = layer.kernel_size[0]
    if isinstance(layer, TorchConv2D):
        return (k - 1) // 2
    if layer.padding == "valid":
        return 0
    if layer.strides == (1, 1) and k % 2 == 1:
        return (k - 1) // 2
    return None


# --------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------


class _Plan:
    """The values to assign, gathered while checking; applied only when everything matched."""

    def __init__(self):
        self.assignments = []  # (variable, array)
        self.pairs = []  # (torch path, keras layer name)

    def assign(self, variable, array, torch_node, keras_node):
        array = np.asarray(array)
        if tuple(variable.shape) != array.shape:
            raise ConversionError(
                f"{torch_node} does not fit {keras_node}: the Keras variable {variable.path} has shape "
                f"{tuple(variable.shape)}, the converted Torch tensor {array.shape}."
            )
        self.assignments.append((variable, array))

    def apply(self):
        for variable, array in self.assignments:
            variable.assign(array.astype(keras.backend.standardize_dtype(variable.dtype)))


def _mismatch(t, k, what):
    return ConversionError(f"{t} does not match {k}: {what}.")


def _match_sequence(torch_nodes, keras_nodes, plan, where):
    """Matches two node sequences of the same extent (a unit's branch or shortcut)."""
    if [n.kind for n in torch_nodes] != [n.kind for n in keras_nodes]:
        raise ConversionError(
            f"{where}: the Torch modules are {[n.kind for n in torch_nodes]} "
            f"({', '.join(n.path for n in torch_nodes) or 'identity'}), the Keras layers "
            f"{[n.kind for n in keras_nodes]} ({', '.join(n.name for n in keras_nodes) or 'identity'})."
        )
    pending_bias = None
    for i, (t, k) in enumerate(zip(torch_nodes, keras_nodes)):
        follower = torch_nodes[i + 1].kind if i + 1 < len(torch_nodes) else None
        pending_bias = _match_leaf(t, k, plan, pending_bias, follower)


def _match_leaf(t, k, plan, pending_bias, follower):
    """Checks and plans one pair of leaves; returns a conv bias to fold into the next BatchNorm."""
    if t.kind == "conv":
        return _match_conv(t, k, plan, follower)
    if t.kind == "bn":
        _match_bn(t, k, plan, pending_bias)
    elif t.kind == "linear":
        _match_linear(t, k, plan)
    elif t.kind == "maxpool":
        _match_maxpool(t, k)
    elif t.kind == "option_a":
        raise _mismatch(t, k, "Keras uses a parameter-free option A shortcut")
    plan.pairs.append((t.path, k.name))
    return None


def _match_conv(t, k, plan, follower):
    layer = k.layer
    n_in, n_out = int(_number(t, "nInputPlane")), int(_number(t, "nOutputPlane"))
    kh, kw = int(_number(t, "kH")), int(_number(t, "kW"))
    weight = _tensor(t, "weight")
    if weight.ndim == 2 and weight.size == n_out * n_in * kh * kw:  # nn.SpatialConvolutionMM
        weight = weight.reshape(n_out, n_in, kh, kw)
    if weight.ndim != 4 or weight.shape != (n_out, n_in, kh, kw):
        raise ConversionError(
            f"{t} is corrupt: weight of shape {weight.shape} for {n_in} -> {n_out} channels, {kh}x{kw} kernel."
        )
    torch_stride = (int(_number(t, "dH", default=1)), int(_number(t, "dW", default=1)))
    pad = int(_number(t, "padH", "padding", default=0)), int(_number(t, "padW", "padding", default=0))
    if int(_number(t, "groups", default=1)) != 1:
        raise _mismatch(t, k, "grouped convolutions are not supported")
    if tuple(layer.kernel.shape) != (kh, kw, n_in, n_out):
        raise _mismatch(
            t, k, f"Torch weight [out, in, kh, kw] = {list(weight.shape)}, Keras kernel [kh, kw, in, out] = "
                  f"{list(layer.kernel.shape)}"
        )
    if tuple(layer.strides) != torch_stride:
        raise _mismatch(t, k, f"Torch stride {torch_stride}, Keras stride {tuple(layer.strides)}")
    keras_pad = _keras_padding(layer)
    if keras_pad is None or pad != (keras_pad, keras_pad):
        raise _mismatch(t, k, f"Torch padding {pad}, Keras padding {keras_pad}")
    plan.assign(layer.kernel, np.transpose(weight, (2, 3, 1, 0)), t, k)

    bias = _tensor(t, "bias", required=False)
    if bias is not None and bias.shape != (n_out,):
        raise ConversionError(f"{t} is corrupt: bias of shape {bias.shape} for {n_out} output channels.")
    plan.pairs.append((t.path, k.name))
    if layer.use_bias:
        plan.assign(layer.bias, np.zeros((n_out,), np.float32) if bias is None else bias, t, k)
        return None
    if bias is None or not np.any(bias):
        return None
    if follower == "bn":
        return bias, t
    raise ConversionError(
        f"{t} has a non-zero bias and no BatchNorm after it to fold it into, but {k} has no bias. "
        "Build the model with use_bias=True to keep it."
    )


def _match_bn(t, k, plan, pending_bias):
    layer = k.layer
    gamma, beta = _tensor(t, "weight", required=False), _tensor(t, "bias", required=False)
    if gamma is None or beta is None:
        raise _mismatch(t, k, "the Torch BatchNorm is not affine (no weight/bias)")
    if not (layer.scale and layer.center):
        raise _mismatch(t, k, "the Keras BatchNormalization lacks gamma or beta")
    eps = float(_number(t, "eps"))
    if not math.isclose(eps, layer.epsilon, rel_tol=1e-6):
        raise _mismatch(t, k, f"Torch eps {eps:g}, Keras epsilon {layer.epsilon:g}")
    mean = _tensor(t, "running_mean").astype(np.float64)
    var = _tensor(t, "running_var", required=False)
    if var is None:
        std = _tensor(t, "running_std", required=False)
        if std is None:
            raise ConversionError(f"{t} has neither `running_var` nor `running_std`.")
        # nn.BatchNormalization before its version 2 stored 1/sqrt(var + eps); nn converts it thus.
        var = np.power(std.astype(np.float64), -2) - eps
    channels = gamma.shape
    for key, value in (("bias", beta), ("running_mean", mean), ("running_var", var)):
        if value.shape != channels:
            raise ConversionError(f"{t} is corrupt: `{key}` of shape {value.shape}, `weight` of shape {channels}.")
    if pending_bias is not None:
        bias, conv_node = pending_bias
        if bias.shape != channels:
            raise _mismatch(t, k, f"{conv_node} gives {bias.shape[0]} channels, the BatchNorm has {channels[0]}")
        mean = mean - bias.astype(np.float64)  # BN(x + b) with mean m == BN(x) with mean m - b
    if tuple(layer.gamma.shape) != channels:
        raise _mismatch(
            t, k, f"Torch BatchNorm of {channels[0]} channels, Keras BatchNormalization of "
                  f"{layer.gamma.shape[0]} (files from before the post-release fix have a 4n-channel BN "
                  "after the 3x3 convolution)"
        )
    plan.assign(layer.gamma, gamma, t, k)
    plan.assign(layer.beta, beta, t, k)
    plan.assign(layer.moving_mean, mean, t, k)
    plan.assign(layer.moving_variance, var, t, k)


def _match_linear(t, k, plan):
    layer = k.layer
    weight, bias = _tensor(t, "weight"), _tensor(t, "bias", required=False)
    if weight.ndim != 2:
        raise ConversionError(f"{t} is corrupt: weight of shape {weight.shape}.")
    if tuple(layer.kernel.shape) != weight.shape[::-1]:
        raise _mismatch(
            t, k, f"Torch weight [out, in] = {list(weight.shape)}, Keras kernel [in, out] = "
                  f"{list(layer.kernel.shape)}"
        )
    plan.assign(layer.kernel, weight.T, t, k)
    if layer.use_bias:
        plan.assign(layer.bias, np.zeros(weight.shape[0], np.float32) if bias is None else bias, t, k)
    elif bias is not None and np.any(bias):
        raise _mismatch(t, k, "the Torch Linear has a non-zero bias, the Keras Dense none")


def _match_maxpool(t, k):
    layer = k.layer
    torch_pool = ((int(_number(t, "kH")), int(_number(t, "kW"))), (int(_number(t, "dH")), int(_number(t, "dW"))),
                  (int(_number(t, "padH", default=0)), int(_number(t, "padW", default=0))))
    keras_pool = (tuple(layer.pool_size), tuple(layer.strides), (k.padding, k.padding))
    if layer.padding != "valid" or torch_pool != keras_pool:
        raise _mismatch(t, k, f"Torch (kernel, stride, padding) {torch_pool}, Keras {keras_pool}")
    if _number(t, "ceil_mode", default=False):
        raise _mismatch(t, k, "Torch pools in ceil mode, Keras in floor mode")


def _units_per_stage(nodes, stage_of):
    counts = {}
    for node in nodes:
        if node.kind == "unit":
            counts[stage_of(node)] = counts.get(stage_of(node), 0) + 1
    return tuple(counts.values())


def _check_depth(torch_nodes, keras_nodes):
    """Compares residual units per stage first, so a file of another depth gets a plain message."""
    # A stage is the run of units with the same output width.
    torch_units = _units_per_stage(torch_nodes, lambda n: _number([c for c in n.branch if c.kind == "conv"][-1],
                                                                   "nOutputPlane"))
    keras_units = _units_per_stage(keras_nodes, lambda n: n.layer.output_filters)
    if torch_units != keras_units:
        raise ConversionError(
            f"The Torch checkpoint has {sum(torch_units)} residual units, {torch_units} per stage; the Keras "
            f"model {sum(keras_units)}, {keras_units} per stage: the file is of a different depth "
            "(ResNet-200 has (3, 24, 36, 3))."
        )


def _match_model(torch_nodes, keras_nodes, plan):
    _check_depth(torch_nodes, keras_nodes)
    i = j = 0
    while j < len(keras_nodes):
        k = keras_nodes[j]
        if i >= len(torch_nodes):
            raise ConversionError(
                f"The Torch model ends where {k} still needs weights: the file is of a shallower network."
            )
        t = torch_nodes[i]
        if t.kind != k.kind:
            raise _mismatch(t, k, f"a Torch {t.kind} where Keras has a {k.kind} "
                                  "(the file is of a different depth or layout)")
        if k.kind == "unit":
            branch, shortcut = _unit_parts(k.layer)
            where = f"{t} against Keras unit {k.name!r}"
            _match_sequence(t.branch, branch, plan, f"{where}, residual branch")
            _match_sequence(t.shortcut, shortcut, plan, f"{where}, shortcut")
            plan.pairs.append((t.path, k.name))
            # f of Eqn. 2 (what the unit does after its addition) are the Torch modules after CAddTable.
            for op, layer in k.layer.after_addition_steps():
                i += 1
                if i >= len(torch_nodes) or torch_nodes[i].kind != op:
                    raise ConversionError(
                        f"Keras unit {k.name!r} applies {op} after its addition; the Torch model does not "
                        f"after {t}."
                    )
                if layer is not None:
                    _match_leaf(torch_nodes[i], _Keras(op, layer, layer.name), plan, None, None)
        else:
            follower = torch_nodes[i + 1].kind if i + 1 < len(torch_nodes) else None
            pending = _match_leaf(t, k, plan, None, follower)
            if pending is not None:
                # A biased conv outside the units (the stem): fold it into the BatchNorm pair that follows.
                if j + 1 >= len(keras_nodes) or keras_nodes[j + 1].kind != "bn":
                    raise _mismatch(t, k, "a non-zero bias has no Keras BatchNormalization to fold into")
                i, j = i + 1, j + 1
                _match_leaf(torch_nodes[i], keras_nodes[j], plan, pending, None)
        i, j = i + 1, j + 1
    rest = torch_nodes[i:]
    has_classifier = any(k.kind == "linear" for k in keras_nodes)
    if rest and (has_classifier or any(t.kind not in ("avgpool", "linear") for t in rest)):
        raise ConversionError(
            f"{rest[0]} has no counterpart in the Keras model: the file is of a deeper network "
            f"({len(rest)} Torch modules are left after the last Keras layer)."
        )


def convert(source, model):
    """Loads a Torch7 ResNet checkpoint into a built Keras ``model``, checking every module.

    Args:
        source: path of a ``.t7`` file (or the object ``torch7.load`` returned).
        model: a Keras model of the same layout, e.g. ``PreActResNet200(weights=None)``; with
            ``include_top=False`` the Torch classifier is left out.

    Returns:
        ``[(torch_module_path, keras_layer_name), ...]``: every module that was mapped.

    Raises:
        ConversionError: a module does not match its Keras layer (nothing is assigned then).
        torch7.Torch7Error: the file is truncated or corrupt.
    """
    if looped_models.is_looped(model):
        # The module-by-module match needs every unit as a layer: convert into the unrolled twin.
        twin = looped_models.unroll(model)
        pairs = convert(source, twin)
        looped_models.copy_weights(twin, model)
        return pairs
    root = torch7.load(source) if isinstance(source, (str, os.PathLike)) else source
    if isinstance(root, dict) and "model" in root:
        root = root["model"]
    _check_tree(root)
    plan = _Plan()
    keras_nodes = _keras_nodes(model)
    for k in keras_nodes:
        if k.kind == "unit" and not k.layer.built:
            raise ConversionError(f"Keras layer {k.name!r} is not built; build the model first.")
    _match_model(_flatten(root, "model"), keras_nodes, plan)
    plan.apply()
    return plan.pairs
