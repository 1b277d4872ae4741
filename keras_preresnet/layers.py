"""Residual units of "Identity Mappings in Deep Residual Networks" (He et al., 2016) as Keras layers.

A unit computes ``y = h(x) + F(x)`` and ``x_next = f(y)`` (Eqn. 1-2). The five activation orders of
Fig. 4 are five unit classes; the six shortcut types of Fig. 2 are six small layers that combine the
shortcut path ``h(x)`` with the residual branch ``F(x)``. Every unit comes in the basic (two 3x3
convolutions), bottleneck (1x1, 3x3, 1x1) and 1-layer (one 3x3, Table 3) forms, and matches dimensions
with the ResNet paper's option A (zero padding), B (projection where dimensions change) or C
(projection everywhere).

Convolutions pad like Torch (symmetrically), so weights converted from Torch checkpoints give the same
numbers; batch normalisation uses Torch's epsilon and momentum. A unit is one layer: a 1001-layer
network is a graph of a few hundred unit nodes, which keeps functional models quick to build and save.
"""

import keras
from keras import ops

from keras_preresnet import defaults

_PACKAGE = "keras_preresnet"


def _register(cls):
    return keras.saving.register_keras_serializable(package=_PACKAGE)(cls)


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


@_register
class TorchConv2D(keras.layers.Conv2D):
    """A ``Conv2D`` that pads ``(k - 1) // 2`` zeros on every side, as Torch does.

    Keras' ``'same'`` padding is asymmetric for strided convolutions on even inputs, which shifts the
    sampling grid by one pixel and breaks weight conversion from Torch. Stride-1 convolutions keep
    ``'same'`` (symmetric for odd kernels) so the backend can fuse the padding.
    """

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        kwargs.pop("padding", None)
        kwargs.setdefault("use_bias", False)
        kwargs.setdefault("kernel_initializer", defaults.conv_initializer())
        super().__init__(filters, kernel_size, strides=strides, padding="valid", **kwargs)
        self.torch_padding = 0 if self.strides == (1, 1) else (self.kernel_size[0] - 1) // 2
        if self.strides == (1, 1):
            self.padding = "same"
        self.input_spatial_shape = None

    def build(self, input_shape):
        self.input_spatial_shape = tuple(input_shape[1:3])
        super().build(input_shape)

    def call(self, inputs):
        p = self.torch_padding
        if p:
            inputs = ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]])
        return super().call(inputs)

    def compute_output_shape(self, input_shape):
        p = self.torch_padding
        if p:
            input_shape = (
                input_shape[0],
                None if input_shape[1] is None else input_shape[1] + 2 * p,
                None if input_shape[2] is None else input_shape[2] + 2 * p,
                input_shape[3],
            )
        return super().compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.pop("padding")
        return config


# Input dtypes TensorFlow's fused batch-norm kernel takes with float32 scale and offset on every device.
_FUSED_DTYPES = ("float32", "float16")


@_register
class TorchBatchNormalization(keras.layers.BatchNormalization):
    """``BatchNormalization`` that trains as Torch's ``nn.SpatialBatchNormalization``.

    Inference, weights and config are Keras'. In training on the TensorFlow backend, a 4-D channels-last
    float32/float16 input goes through TensorFlow's fused kernel (``FusedBatchNormV3``): one pass forward
    and one backward where Keras' own layer runs about a dozen element-wise ops, which makes the CIFAR
    trainer's step 1.2-1.35x faster on a CPU (bench/train_step.py). The kernel normalises with the
    biased batch variance and returns the unbiased one, which goes into the running variance, as in
    Torch. Anything else (other backends, masks, renorm, synchronized statistics, other dtypes) is
    Keras' ``BatchNormalization`` unchanged.
    """

    def _fusable(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow" and self.trainable and mask is None and not self.renorm
            and not self.synchronized and self.center and self.scale and len(inputs.shape) == 4
            and self.axis in (-1, 3) and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        if training is True and self._fusable(inputs, mask):
            import tensorflow as tf

            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"),
                epsilon=self.epsilon, data_format="NHWC", is_training=True,
            )
            decay = ops.cast(self.momentum, self.moving_mean.dtype)
            self.moving_mean.assign(self.moving_mean * decay + ops.cast(mean, self.moving_mean.dtype) * (1 - decay))
            self.moving_variance.assign(self.moving_variance * decay
                                        + ops.cast(variance, self.moving_variance.dtype) * (1 - decay))
            return ops.cast(outputs, self.compute_dtype)
        return super().call(inputs, training=training, mask=mask)


def batch_norm(name, dtype=None):
    """``TorchBatchNormalization`` with Torch's epsilon 1e-5 and momentum 0.1 (Keras 0.9)."""
    return TorchBatchNormalization(
        axis=-1, epsilon=defaults.BN_EPSILON, momentum=defaults.BN_MOMENTUM, name=name, dtype=dtype
    )


def _build_chain(layer, input_shape):
    layer.build(input_shape)
    return layer.compute_output_shape(input_shape)


# --------------------------------------------------------------------------------------------------
# Shortcut types of Fig. 2: how h(x) and F(x) are combined
# --------------------------------------------------------------------------------------------------


class Shortcut(keras.layers.Layer):
    """Base of the Fig. 2 shortcut types: ``combine(h, residual)`` of the shortcut path ``h = h(x)``
    and the residual branch ``residual = F(x)``.

    ``h`` is the unit's input after dimension matching (option A/B/C); a shortcut type that
    ``projects`` (the 1x1 conv shortcut) receives the raw input and matches dimensions itself.
    """

    projects = False

    def __init__(self, filters=None, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides

    def build(self, h_shape):
        self.built = True

    def call(self, h, residual, training=None):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


@_register
class IdentityShortcut(Shortcut):
    """Fig. 2(a): ``y = x + F(x)``."""

    def call(self, h, residual, training=None):
        return h + residual


@_register
class ConstantScalingShortcut(Shortcut):
    """Fig. 2(b): ``y = lambda * x + mu * F(x)`` (the paper tries lambda = 0.5, mu = 1 or 0.5)."""

    def __init__(self, shortcut_scale=0.5, residual_scale=0.5, **kwargs):
        super().__init__(**kwargs)
        self.shortcut_scale = float(shortcut_scale)
        self.residual_scale = float(residual_scale)

    def call(self, h, residual, training=None):
        return self.shortcut_scale * h + self.residual_scale * residual

    def get_config(self):
        config = super().get_config()
        config.update(shortcut_scale=self.shortcut_scale, residual_scale=self.residual_scale)
        return config


class _GatedShortcut(Shortcut):
    """A gate ``g(x) = sigmoid(W_g x + b_g)`` from a 1x1 convolution of the shortcut input."""

    def __init__(self, gate_bias=-6.0, **kwargs):
        super().__init__(**kwargs)
        self.gate_bias = float(gate_bias)

    def build(self, h_shape):
        self.gate = TorchConv2D(
            h_shape[-1],
            1,
            use_bias=True,
            kernel_initializer=defaults.conv_initializer(),
            bias_initializer=keras.initializers.Constant(self.gate_bias),
            name=f"{self.name}_gate",
            dtype=self.dtype_policy,
        )
        self.gate.build(h_shape)
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(gate_bias=self.gate_bias)
        return config


@_register
class ExclusiveGatingShortcut(_GatedShortcut):
    """Fig. 2(c): ``y = (1 - g(x)) * x + g(x) * F(x)``."""

    def call(self, h, residual, training=None):
        g = ops.sigmoid(self.gate(h))
        return (1.0 - g) * h + g * residual


@_register
class ShortcutOnlyGatingShortcut(_GatedShortcut):
    """Fig. 2(d): ``y = (1 - g(x)) * x + F(x)``."""

    def call(self, h, residual, training=None):
        g = ops.sigmoid(self.gate(h))
        return (1.0 - g) * h + residual


@_register
class Conv1x1Shortcut(Shortcut):
    """Fig. 2(e): ``y = W_s x + F(x)`` with a 1x1 convolution on every unit's shortcut."""

    projects = True

    def build(self, h_shape):
        self.conv = TorchConv2D(
            self.filters, 1, strides=self.strides, name=f"{self.name}_conv", dtype=self.dtype_policy
        )
        self.conv.build(h_shape)
        self.built = True

    def call(self, h, residual, training=None):
        return self.conv(h) + residual


@_register
class DropoutShortcut(Shortcut):
    """Fig. 2(f): ``y = dropout(x) + F(x)`` (the paper uses a rate of 0.5)."""

    def __init__(self, rate=0.5, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.dropout = keras.layers.Dropout(self.rate)

    def call(self, h, residual, training=None):
        return self.dropout(h, training=training) + residual

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate)
        return config


@_register
class DropPath(keras.layers.Layer):
    """Stochastic depth's drop of a residual branch (Huang et al. 2016, Eqn. 2), per example.

    In training, each example's branch is zeroed with probability ``rate`` and kept ones are scaled by
    ``1 / (1 - rate)``, so the test-time network is the plain one (no rescaling). Unlike Fig. 2(f)'s
    dropout shortcut, the identity path is never touched.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= float(rate) < 1:
            raise ValueError(f"`rate` must be in [0, 1); received rate={rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, branch, training=None):
        if not training or not self.rate:
            return branch
        keep = 1.0 - self.rate
        shape = (ops.shape(branch)[0],) + (1,) * (len(branch.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=branch.dtype))
        return branch * mask / keep

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


SHORTCUTS = {
    "identity": IdentityShortcut,
    "constant_scaling": ConstantScalingShortcut,
    "exclusive_gating": ExclusiveGatingShortcut,
    "shortcut_only_gating": ShortcutOnlyGatingShortcut,
    "conv1x1": Conv1x1Shortcut,
    "dropout": DropoutShortcut,
}


# --------------------------------------------------------------------------------------------------
# Residual units: the activation orders of Fig. 4
# --------------------------------------------------------------------------------------------------

FORMS = ("basic", "bottleneck", "one_layer")
PROJECTIONS = ("A", "B", "C")
STRIDE_POSITIONS = ("first", "3x3")
SHORTCUT_SOURCES = ("raw", "preactivated")


def check_choice(name, value, allowed):
    """Returns ``value`` if it is one of ``allowed``, else a ValueError naming the argument and the options."""
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}; received {name}={value!r}.")
    return value


def apply_ops(steps, x, training=None):
    """Runs an op sequence: ``steps`` are ``(op, layer)`` pairs, the one reading of the op names.

    ``'conv'`` (and ``'conv+bn'``, a convolution with the BatchNorm after it folded in) calls its
    convolution, ``'bn'`` its BatchNorm in training or inference mode, ``'relu'`` is ``max(x, 0)`` --
    through its layer where the network names one, as a plain op where the layer is None.
    """
    for op, layer in steps:
        if op == "relu":
            x = ops.relu(x) if layer is None else layer(x)
        elif op == "bn":
            x = layer(x, training=training)
        else:
            x = layer(x)
    return x


def _steps(sequence, layers):
    """Pairs each op of ``sequence`` with the next of ``layers``; a ReLU has no layer."""
    layers = iter(layers)
    return [(op, None if op == "relu" else next(layers)) for op in sequence]


class ResidualUnit(keras.layers.Layer):
    """One residual unit ``x_next = f(h(x) + F(x))``.

    A subclass is one activation order of Fig. 4, stated as op sequences in the order they run:
    ``each_conv`` around every convolution of F but the last, ``last_conv`` around the last one,
    ``after_addition`` f; and what it asks of the network around its units: ``stem_tail``, the ops
    after the CIFAR stem's convolution, and ``head``, the ops before pooling (a pre-activation net ends
    with the activation its last unit leaves out). ``order`` is its key in ``UNITS``. Pre-activation
    units (whose F starts before its first convolution) can share that pre-activation with the
    shortcut (``shortcut_from='preactivated'``). A unit with ``has_shortcut = False`` (the plain unit)
    has no h(x) at all and computes ``f(F(x))``.

    Args:
        filters: width of the unit (the inner width of a bottleneck).
        strides: stride of the unit (1 or 2).
        form: ``'basic'`` (3x3, 3x3), ``'bottleneck'`` (1x1, 3x3, 1x1 x ``expansion``) or
            ``'one_layer'`` (one 3x3).
        shortcut: a Fig. 2 shortcut type, one of ``SHORTCUTS``; ``shortcut_options`` are its arguments
            (``shortcut_scale``/``residual_scale``, ``gate_bias``, ``rate``).
        projection: dimension matching of the ResNet paper, ``'A'``, ``'B'`` or ``'C'``.
        projection_bn: whether a projection shortcut is conv-BN (True) or a bare conv.
        stride_position: ``'first'`` (first conv of F) or ``'3x3'`` (the 3x3 of a bottleneck).
        shortcut_from: ``'raw'`` input or the ``'preactivated'`` one (pre-activation units only).
        use_bias: give every convolution of the unit a bias.
        kernel_regularizer: regulariser for every convolution kernel of the unit.
        fold_batchnorm: inference form: every BN that directly follows a convolution is left out and
            that convolution has a bias instead (see ``keras_preresnet.fold_batchnorm``).
        drop_path_rate: probability of dropping the residual branch of an example in training
            (stochastic depth, ``DropPath``); 0 leaves the unit as the paper's.
    """

    order = None
    each_conv = ()
    last_conv = ()
    after_addition = ()
    stem_tail = ()
    head = ()
    has_shortcut = True

    @classmethod
    def preactivates(cls):
        """Whether F starts with an activation before its first convolution (Fig. 4(d), (e))."""
        return cls.each_conv[0] != "conv"

    def __init__(
        self,
        filters,
        strides=1,
        form="basic",
        expansion=4,
        shortcut="identity",
        shortcut_options=None,
        projection="B",
        projection_bn=True,
        stride_position="first",
        shortcut_from="raw",
        use_bias=False,
        kernel_regularizer=None,
        fold_batchnorm=False,
        drop_path_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"`filters` must be a positive integer; received filters={filters!r}.")
        if int(strides) not in (1, 2):
            raise ValueError(f"`strides` must be 1 or 2; received strides={strides!r}.")
        self.filters = int(filters)
        self.strides = int(strides)
        self.form = check_choice("form", form, FORMS)
        self.expansion = int(expansion)
        self.shortcut_type = check_choice("shortcut", shortcut, SHORTCUTS)
        self.shortcut_options = dict(shortcut_options or {})
        if not self.has_shortcut and (self.shortcut_type != "identity" or self.shortcut_options):
            raise ValueError(
                f"{type(self).__name__} has no shortcut: leave `shortcut` and `shortcut_options` at their "
                f"defaults; received shortcut={shortcut!r}, shortcut_options={shortcut_options!r}."
            )
        self.projection = check_choice("projection", projection, PROJECTIONS)
        self.projection_bn = bool(projection_bn)
        self.stride_position = check_choice("stride_position", stride_position, STRIDE_POSITIONS)
        self.shortcut_from = check_choice("shortcut_from", shortcut_from, SHORTCUT_SOURCES)
        if self.shortcut_from == "preactivated" and not self.preactivates():
            raise ValueError(
                f"{type(self).__name__} has no pre-activation to share: use shortcut_from='raw'."
            )
        self.use_bias = bool(use_bias)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.fold_batchnorm = bool(fold_batchnorm)
        if not 0 <= float(drop_path_rate) < 1:
            raise ValueError(f"`drop_path_rate` must be in [0, 1); received drop_path_rate={drop_path_rate!r}.")
        if drop_path_rate and not self.has_shortcut:
            raise ValueError(f"{type(self).__name__} has no shortcut to keep when its branch is dropped; "
                             "use drop_path_rate=0.")
        self.drop_path_rate = float(drop_path_rate)
        self.drop_path = DropPath(self.drop_path_rate, name=f"{self.name}_drop_path") if drop_path_rate else None
        self.output_filters = self.filters * (self.expansion if self.form == "bottleneck" else 1)

    # -- structure --------------------------------------------------------------------------------

    def conv_specs(self):
        """(filters, kernel, strides) of each convolution of F, in order."""
        f, out = self.filters, self.output_filters
        kernels = {"basic": [(f, 3), (f, 3)], "bottleneck": [(f, 1), (f, 3), (out, 1)],
                   "one_layer": [(f, 3)]}[self.form]
        strided = 0 if self.stride_position == "first" or self.form != "bottleneck" else 1
        return [(c, k, self.strides if i == strided else 1) for i, (c, k) in enumerate(kernels)]

    def branch_ops(self, folded=False):
        """The op sequence of F, e.g. ``['bn', 'relu', 'conv', 'bn', 'relu', 'conv']``.

        With ``folded``, a BN that directly follows a convolution becomes part of it (``'conv+bn'``).
        """
        ops_ = list(self.each_conv) * (len(self.conv_specs()) - 1) + list(self.last_conv)
        if not folded:
            return ops_
        merged = []
        for op in ops_:
            if op == "bn" and merged and merged[-1] == "conv":
                merged[-1] = "conv+bn"
            else:
                merged.append(op)
        return merged

    def branch_steps(self):
        """F as ``(op, layer)`` pairs, for ``apply_ops``; a ReLU has no layer."""
        return _steps(self.branch_ops_, self.branch_layers)

    def after_addition_steps(self):
        """f as ``(op, layer)`` pairs, for ``apply_ops``."""
        return _steps(self.after_addition, self.after_layers)

    def _conv(self, filters, kernel, strides, name, bias=False):
        return TorchConv2D(
            filters, kernel, strides=strides, use_bias=self.use_bias or bias,
            kernel_regularizer=self.kernel_regularizer, name=name, dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        shape = self._build_branch(tuple(input_shape))
        self.after_layers = []
        if "bn" in self.after_addition:
            layer = batch_norm(f"{self.name}_out_bn", dtype=self.dtype_policy)
            layer.build(shape)
            self.after_layers.append(layer)
        self.projection_conv = self.projection_norm = self.combine = None
        self.zero_pad_channels = 0
        if self.has_shortcut:
            self._build_shortcut(tuple(input_shape), shape)
        self.built = True

    def _build_branch(self, shape):
        """Creates the layers of F (names ``<unit>_preact_bn``, ``<unit>_<i>_conv``, ``<unit>_<i>_bn``);
        returns the shape of F(x)."""
        specs = iter(self.conv_specs())
        self.branch_ops_ = tuple(self.branch_ops(folded=self.fold_batchnorm))
        self.branch_layers = []
        n_conv = 0
        bn_name = "preact_bn"
        for op in self.branch_ops_:
            if op.startswith("conv"):
                n_conv += 1
                filters, kernel, strides = next(specs)
                layer = self._conv(
                    filters, kernel, strides, f"{self.name}_{n_conv}_conv", bias=op == "conv+bn"
                )
                bn_name = f"{n_conv}_bn"
            elif op == "bn":
                layer = batch_norm(f"{self.name}_{bn_name}", dtype=self.dtype_policy)
            else:
                continue
            shape = _build_chain(layer, shape)
            self.branch_layers.append(layer)
        # Ops before the first convolution are the unit's pre-activation.
        self.n_preactivation = next(i for i, op in enumerate(self.branch_ops_) if op.startswith("conv"))
        return shape

    def _build_shortcut(self, input_shape, residual_shape):
        """Creates the dimension matching of h(x) (option A, B or C) and the Fig. 2 shortcut layer."""
        in_channels = input_shape[-1]
        shortcut_cls = SHORTCUTS[self.shortcut_type]
        changes = self.strides != 1 or in_channels != self.output_filters
        if not shortcut_cls.projects and (self.projection == "C" or (changes and self.projection == "B")):
            fold = self.projection_bn and self.fold_batchnorm
            self.projection_conv = self._conv(
                self.output_filters, 1, self.strides, f"{self.name}_0_conv", bias=fold
            )
            projected = _build_chain(self.projection_conv, input_shape)
            if self.projection_bn and not fold:
                self.projection_norm = batch_norm(f"{self.name}_0_bn", dtype=self.dtype_policy)
                self.projection_norm.build(projected)
        elif not shortcut_cls.projects and changes:
            if in_channels > self.output_filters:
                raise ValueError(
                    f"Option A shortcuts can only widen: unit {self.name!r} maps {in_channels} channels "
                    f"to {self.output_filters}. Use projection='B'."
                )
            self.zero_pad_channels = self.output_filters - in_channels
        self.combine = shortcut_cls(
            filters=self.output_filters, strides=self.strides, name=f"{self.name}_shortcut",
            dtype=self.dtype_policy, **self.shortcut_options,
        )
        self.combine.build(input_shape if shortcut_cls.projects else residual_shape)

    # -- forward ----------------------------------------------------------------------------------

    def _match_dimensions(self, x, training):
        if self.combine.projects:
            return x
        if self.projection_conv is not None:
            x = self.projection_conv(x)
            if self.projection_norm is not None:
                x = self.projection_norm(x, training=training)
            return x
        if self.strides != 1:
            # Option A: subsample like Torch's 1x1 stride-2 average pooling, then pad zero channels.
            x = x[:, :: self.strides, :: self.strides, :]
        if self.zero_pad_channels:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.zero_pad_channels]])
        return x

    def preactivate(self, inputs, training=None):
        """The unit's pre-activation of ``inputs`` (its ops before the first convolution, with its own
        layers): the tensor its branch convolves. The input itself for units that start with a convolution."""
        return apply_ops(self.branch_steps()[: self.n_preactivation], inputs, training)

    def call(self, inputs, training=None):
        steps = self.branch_steps()
        n = self.n_preactivation
        x = apply_ops(steps[:n], inputs, training)
        residual = apply_ops(steps[n:], x, training)
        if not self.has_shortcut:
            y = residual
        else:
            if self.drop_path is not None:
                residual = self.drop_path(residual, training=training)
            h = self._match_dimensions(x if self.shortcut_from == "preactivated" else inputs, training)
            y = self.combine(h, residual, training=training)
        return apply_ops(self.after_addition_steps(), y, training)

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else (size + self.strides - 1) // self.strides

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]), self.output_filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            form=self.form,
            expansion=self.expansion,
            shortcut=self.shortcut_type,
            shortcut_options=dict(self.shortcut_options),
            projection=self.projection,
            projection_bn=self.projection_bn,
            stride_position=self.stride_position,
            shortcut_from=self.shortcut_from,
            use_bias=self.use_bias,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            fold_batchnorm=self.fold_batchnorm,
            drop_path_rate=self.drop_path_rate,
        )
        return config


# Unit classes by their ``order``; a new activation order is one more class with ``@_unit``.
UNITS = {}


def _unit(cls):
    UNITS[cls.order] = cls
    return _register(cls)


@_unit
class OriginalUnit(ResidualUnit):
    """Fig. 4(a), the original unit: F = conv-BN-ReLU-conv-BN, ReLU after the addition."""

    order = "original"
    each_conv = ("conv", "bn", "relu")
    last_conv = ("conv", "bn")
    after_addition = ("relu",)
    stem_tail = ("bn", "relu")


@_unit
class PlainUnit(ResidualUnit):
    """The ResNet paper's plain counterpart of the original unit (its Fig. 3, middle): the same layers,
    ``x_next = ReLU(F(x))`` with F = conv-BN-ReLU-conv-BN and no shortcut at all, so no projection and
    the parameters of a ResNet with option A shortcuts."""

    order = "plain"
    each_conv = ("conv", "bn", "relu")
    last_conv = ("conv", "bn")
    after_addition = ("relu",)
    stem_tail = ("bn", "relu")
    has_shortcut = False


@_unit
class BNAfterAdditionUnit(ResidualUnit):
    """Fig. 4(b): F = conv-BN-ReLU-conv, then BN and ReLU after the addition."""

    order = "bn_after_addition"
    each_conv = ("conv", "bn", "relu")
    last_conv = ("conv",)
    after_addition = ("bn", "relu")
    stem_tail = ("bn", "relu")


@_unit
class ReLUBeforeAdditionUnit(ResidualUnit):
    """Fig. 4(c): F = conv-BN-ReLU-conv-BN-ReLU, identity after the addition."""

    order = "relu_before_addition"
    each_conv = ("conv", "bn", "relu")
    last_conv = ("conv", "bn", "relu")
    stem_tail = ("bn", "relu")


@_unit
class ReLUOnlyPreActivationUnit(ResidualUnit):
    """Fig. 4(d): F = ReLU-conv-BN-ReLU-conv-BN, identity after the addition; the stem ends in BN
    and the head adds the ReLU the last unit's sum has not had."""

    order = "relu_only_preactivation"
    each_conv = ("relu", "conv", "bn")
    last_conv = ("relu", "conv", "bn")
    stem_tail = ("bn",)
    head = ("relu",)


@_unit
class FullPreActivationUnit(ResidualUnit):
    """Fig. 4(e), full pre-activation: F = BN-ReLU-conv-BN-ReLU-conv, identity after the addition;
    the stem is a bare convolution and the head adds the BN-ReLU the last sum has not had."""

    order = "full_preactivation"
    each_conv = ("bn", "relu", "conv")
    last_conv = ("bn", "relu", "conv")
    head = ("bn", "relu")
