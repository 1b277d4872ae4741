"""Stages whose repeated units run as one loop, so that compiling a network costs the same at any depth.

After its first unit, every unit of a stage has the same shapes. ``ScannedStage`` builds one template
unit, holds the weights of all those units stacked along a leading axis, and runs the template once per
unit with a scan over the stacked weights (``lax.scan`` on JAX, a ``tf.while_loop`` on TensorFlow): the
traced program holds one unit body per stage instead of one per unit. BatchNorm moving statistics come
out of the loop per unit and are written back; dropout shortcuts carry their random seed through the
loop, so each unit draws its own mask. ``remat=True`` checkpoints the loop body: the backward pass keeps
each unit's input and recomputes the rest of the unit.

Weight files keep the unrolled layout (``conv3_block7`` and its ``conv3_block7_2_conv``): a model with
looped stages is a ``LoopedModel``, whose ``save_weights``/``load_weights`` translate between its stacked
variables and the per-unit entries, so one ``.weights.h5`` loads into either form. ``unroll`` returns
the straight-line twin of a looped model (for exporters, BatchNorm folding and the Torch7 converter).
"""

import os
import tempfile

import h5py
import keras
import numpy as np
from keras.src.saving import saving_lib
from keras.src.utils.naming import to_snake_case

from keras_preresnet import files

_PACKAGE = "keras_preresnet"

# scan_units="auto" loops a stage from this many units on: the 1001- and 1202-layer CIFAR nets (111 and
# 200 units a stage), whose unrolled first step takes minutes (TF) or does not compile (JAX). Shallower
# stages (at most 36 units, ImageNet ResNet-152/200) stay unrolled, so that each of their units remains
# a layer of its own (model.get_layer('conv4_block7'), layer responses, the Torch7 converter's match).
AUTO_MIN_UNITS = 64


def check_scan_units(scan_units):
    """Returns ``scan_units`` if it is ``'auto'``, True or False, else a ValueError naming the choices."""
    if not (scan_units is True or scan_units is False or scan_units == "auto"):
        raise ValueError(f"`scan_units` must be 'auto', True or False; received scan_units={scan_units!r}.")
    return scan_units


def loops(scan_units, count):
    """Whether a stage of ``count`` units runs as a loop: with ``'auto'`` from ``AUTO_MIN_UNITS`` units on,
    with True whenever there are at least two units after the first."""
    check_scan_units(scan_units)
    if scan_units == "auto":
        return count >= AUTO_MIN_UNITS
    return scan_units and count >= 3


def apply_stage(stage_units, x, scan_units="auto", remat=False):
    """Applies one stage's unbuilt unit layers ``stage_units`` to ``x``, looping all but the first.

    A stage loops when ``scan_units`` says so and the units after the first share one configuration
    (they differ only in name). ``remat`` applies to looped stages only.
    """
    repeated = [_without_name(u.get_config()) for u in stage_units[1:]]
    # Units that differ beyond their names (stochastic depth's per-unit drop rates) stay unrolled.
    if not loops(scan_units, len(stage_units)) or any(config != repeated[0] for config in repeated):
        for unit in stage_units:
            x = unit(x)
        return x
    x = stage_units[0](x)
    repeated = stage_units[1:]
    return ScannedStage(repeated[0], [u.name for u in repeated], remat=remat, name=f"{repeated[0].name}_loop")(x)


# --------------------------------------------------------------------------------------------------
# Convolutions in a loop body on XLA:CPU
# --------------------------------------------------------------------------------------------------
#
# XLA:CPU runs a convolution through its fast (Eigen) kernels only in the canonical layout (batch,
# rows, cols, features) x (rows, cols, in, out). Outside a loop it rewrites the gradient convolutions
# into that layout; inside a ``while`` body it leaves them as they come (JAX's weight gradient is
# ``f01b_i01o->01bf``) and emits a naive loop nest for them. Measured on 2 CPU cores, 18 units of a
# 3x3, 64-channel convolution, batch 8, 8x8, gradient of the looped stack against the unrolled one:
# JAX 236 vs 16 ms; TensorFlow under XLA (``jit_compile=True``) 222 ms against 21 ms without XLA. A
# looped stage's convolutions therefore carry their own gradient wherever XLA compiles for the CPU (JAX
# on its CPU platform; TensorFlow inside an XLA-compiled function with no GPU visible), written as
# canonical convolutions between explicit transposes: 14 ms (JAX) and 13 ms (TensorFlow with XLA) for
# the same stack. TensorFlow without XLA keeps its own gradient kernels (21 ms; these would take 39).


def _same_padding(size):
    """Keras' ``'same'`` padding of a stride-1 window: the odd pixel goes after."""
    low = (size - 1) // 2
    return low, size - 1 - low


def _paddings(kernel_shape):
    """The ``[(top, bottom), (left, right)]`` paddings of a stride-1 ``'same'`` convolution (also those
    of its weight gradient) and of its input gradient."""
    (kh, kw), rows, cols = kernel_shape[:2], _same_padding(kernel_shape[0]), _same_padding(kernel_shape[1])
    return [rows, cols], [(kh - 1 - rows[0], kh - 1 - rows[1]), (kw - 1 - cols[0], kw - 1 - cols[1])]


def _canonical_gradients(conv, x, kernel, dy):
    """``(dx, dkernel)`` of a stride-1 ``'same'`` NHWC convolution in canonical convolutions only;
    ``conv(x, kernel, padding)`` is the backend's NHWC/HWIO convolution with explicit padding."""
    ops = keras.ops
    if tuple(kernel.shape[:2]) == (1, 1):  # matrix products
        return ops.einsum("bhwo,io->bhwi", dy, kernel[0, 0]), ops.einsum("bhwi,bhwo->io", x, dy)[None, None]
    padding, input_padding = _paddings(kernel.shape)
    # dx: the flipped kernel with in and out swapped, slid over dy.
    dx = conv(dy, ops.transpose(ops.flip(kernel, (0, 1)), (0, 1, 3, 2)), input_padding)
    # dkernel: x with its channels as the batch and its batch as the features, dy as the kernel.
    dkernel = conv(ops.transpose(x, (3, 1, 2, 0)), ops.transpose(dy, (1, 2, 0, 3)), padding)
    return dx, ops.transpose(dkernel, (1, 2, 0, 3))


def _jax_canonical_conv():
    import jax
    from jax import lax

    def conv(x, kernel, padding):
        return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @jax.custom_vjp
    def canonical(x, kernel):
        return conv(x, kernel, _paddings(kernel.shape)[0])

    def forward(x, kernel):
        return canonical(x, kernel), (x, kernel)

    def backward(residuals, dy):
        return _canonical_gradients(conv, *residuals, dy)

    canonical.defvjp(forward, backward)
    return canonical


def _tensorflow_canonical_conv():
    import tensorflow as tf

    def conv(x, kernel, padding):
        x = tf.pad(x, [[0, 0], list(padding[0]), list(padding[1]), [0, 0]])
        return tf.nn.conv2d(x, kernel, 1, "VALID")

    @tf.custom_gradient
    def canonical(x, kernel):
        return conv(x, kernel, _paddings(kernel.shape)[0]), lambda dy: _canonical_gradients(conv, x, kernel, dy)

    return canonical


def _xla_cpu_compiles_this():
    """Whether the function being traced is compiled by XLA for the CPU (decided at trace time)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util  # TensorFlow's own test of an XLA context

        in_xla = control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
        return bool(in_xla) and not tf.config.list_logical_devices("GPU")
    return False


def _loop_convolution(layer, conv):
    """``layer.convolution_op`` for a looped stage's template unit: ``conv`` where XLA compiles for the
    CPU, the layer's own elsewhere."""
    default = layer.convolution_op

    def convolution_op(inputs, kernel):
        if not _xla_cpu_compiles_this():
            return default(inputs, kernel)
        # A Keras variable (its value read under the layer's autocast scope) becomes an array here.
        return conv(keras.ops.convert_to_tensor(inputs), keras.ops.convert_to_tensor(kernel))

    return convolution_op


_CANONICAL_CONV = {"jax": _jax_canonical_conv, "tensorflow": _tensorflow_canonical_conv}


def _use_loop_convolutions(template):
    """Gives the stride-1 ``'same'`` convolutions of ``template`` gradients that XLA:CPU runs fast in a
    loop body (see above); other convolutions keep the backend's."""
    if keras.backend.backend() not in _CANONICAL_CONV:
        return
    conv = _CANONICAL_CONV[keras.backend.backend()]()
    for layer in template._flatten_layers(include_self=False, recursive=True):
        if (
            isinstance(layer, keras.layers.Conv2D)
            and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1)
            and layer.padding == "same"
            and layer.data_format == "channels_last"
            and layer.groups == 1
        ):
            layer.convolution_op = _loop_convolution(layer, conv)


class _Hidden:
    """Keeps the template unit out of Keras' tracking and saving: its variables are stand-ins that the
    stacked weights replace on every call."""

    def __init__(self, template):
        self.template = template


def _without_name(config):
    return {k: v for k, v in config.items() if k != "name"}


def _owners(layer):
    """``{id(variable): the innermost layer holding it}`` for every weight of ``layer``."""
    owners = {}
    for sublayer in layer._flatten_layers(include_self=True, recursive=True):
        for variable in sublayer.weights:
            owners[id(variable)] = sublayer
    return owners


def _stacked_initializer(owner, variable, count):
    """Draws each unit's slice from the unit's own initializer: a fan-based initializer has to see the
    per-unit shape, not the stacked one."""
    init = getattr(owner, f"{variable.name}_initializer", None)
    if init is None:
        value = keras.ops.convert_to_numpy(variable)
        return lambda shape, dtype=None: np.broadcast_to(value, shape).astype(dtype or value.dtype)
    init = keras.initializers.get(init)

    def draw(shape, dtype=None):
        # An unseeded Keras initializer repeats its values on every call: one fresh copy per unit.
        copies = [type(init).from_config(init.get_config()) for _ in range(count)]
        return keras.ops.stack([copy(shape[1:], dtype=dtype) for copy in copies])

    return draw


def _scan(f, init, xs, ys_spec):
    """``lax.scan(f, init, xs)`` with ``xs`` and the per-step outputs flat lists (``ys_spec``: their
    ``(dtype, shape)``). keras.ops.scan on TensorFlow requires the per-step outputs to look like the
    carry, so TensorFlow gets its own ``tf.while_loop``."""
    if keras.backend.backend() != "tensorflow":
        return keras.ops.scan(f, init, xs)
    import tensorflow as tf

    length = int(xs[0].shape[0])
    xs_arrays = [tf.TensorArray(x.dtype, size=length, element_shape=x.shape[1:]).unstack(x) for x in xs]
    ys_arrays = [tf.TensorArray(dtype, size=length, element_shape=shape) for dtype, shape in ys_spec]

    def body(i, carry, ys_arrays):
        carry, ys = f(carry, [a.read(i) for a in xs_arrays])
        return i + 1, carry, [a.write(i, y) for a, y in zip(ys_arrays, ys)]

    _, carry, ys_arrays = tf.while_loop(
        lambda i, *_: i < length, body, (tf.constant(0), init, ys_arrays), maximum_iterations=length
    )
    return carry, [a.stack() for a in ys_arrays]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScannedStage(keras.layers.Layer):
    """Identical residual units applied in sequence as one loop over their stacked weights.

    Args:
        unit: the unit layer (or its serialised config) that every step applies; its shapes must be
            the same at its input and output.
        unit_names: the name of each unit, in order (``['conv3_block2', ..., 'conv3_block8']``): the
            names the units have in weight files and in the unrolled twin.
        remat: rematerialise each unit in the backward pass instead of keeping its activations.
    """

    def __init__(self, unit, unit_names, remat=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(unit, keras.layers.Layer):
            unit = keras.saving.serialize_keras_object(unit)
        self.unit = unit
        self.unit_names = [str(n) for n in unit_names]
        if len(self.unit_names) < 1:
            raise ValueError(f"`unit_names` must name at least one unit; received unit_names={unit_names!r}.")
        self.remat = bool(remat)
        self.supports_masking = False

    @property
    def repeats(self):
        return len(self.unit_names)

    def make_unit(self, name):
        """A fresh, unbuilt unit layer like the ones this stage loops over."""
        config = dict(self.unit, config=dict(self.unit["config"], name=name))
        return keras.saving.deserialize_keras_object(config)

    def template(self):
        """The built unit whose body the loop runs (kept out of Keras' saving, hence a method)."""
        return self._hidden.template

    def build(self, input_shape):
        template = self.make_unit(self.unit_names[0])
        template.build(input_shape)
        output_shape = tuple(template.compute_output_shape(input_shape))
        if output_shape != tuple(input_shape):
            raise ValueError(
                f"A looped stage repeats units that keep their input's shape; unit {template.name!r} maps "
                f"{tuple(input_shape)} to {output_shape}."
            )
        _use_loop_convolutions(template)
        self._hidden = _Hidden(template)
        owners = _owners(template)
        prefix = f"{template.name}_"
        self.stacked = []
        for variable in template.weights:
            owner = owners[id(variable)]
            part = owner.name[len(prefix):] if owner.name.startswith(prefix) else owner.name
            self.stacked.append(
                self.add_weight(
                    shape=(self.repeats,) + tuple(variable.shape),
                    dtype=variable.dtype,
                    initializer=_stacked_initializer(owner, variable, self.repeats),
                    # L1/L2 penalties sum over elements, so the stacked penalty is the units' total.
                    regularizer=getattr(variable, "regularizer", None),
                    trainable=variable.trainable,
                    aggregation=variable.aggregation,
                    # The template casts each unit's slice to the compute dtype itself.
                    autocast=False,
                    name=f"{part}_{variable.name}",
                )
            )
        # Units update their BatchNorm statistics: these come out of the loop, one slice per unit.
        self.state_indices = [i for i, v in enumerate(template.weights) if not v.trainable]
        weight_ids = {id(v) for v in template.weights}
        seeds = [v for v in template.non_trainable_variables if id(v) not in weight_ids]
        self.seed_generators = [keras.random.SeedGenerator() for _ in seeds]
        self.built = True

    def _unit_function(self, training):
        """``(x, *seeds, *weight slices) -> (y, *next seeds, *updated statistics)`` for one unit."""
        template = self.template()
        weights = template.weights
        weight_ids = {id(v) for v in weights}
        seeds = [v for v in template.non_trainable_variables if id(v) not in weight_ids]
        n_seeds = len(seeds)
        states = [weights[i] for i in self.state_indices] if training else []

        def unit(x, *flat):
            values = {id(v): s for v, s in zip(seeds + weights, flat)}
            y, updated = template.stateless_call(
                [values[id(v)] for v in template.trainable_variables],
                [values[id(v)] for v in template.non_trainable_variables],
                x,
                training=training,
            )
            new = {id(v): u for v, u in zip(template.non_trainable_variables, updated)}
            return [y] + [new[id(v)] for v in seeds] + [new[id(v)] for v in states]

        return (keras.remat(unit) if self.remat else unit), n_seeds

    def call(self, inputs, training=None):
        template = self.template()
        if template.trainable != self.trainable:
            template.trainable = self.trainable
        training = bool(training)
        unit, n_seeds = self._unit_function(training)

        def step(carry, slices):
            x, seeds = carry
            out = unit(x, *seeds, *slices)
            return (out[0], list(out[1 : 1 + n_seeds])), list(out[1 + n_seeds :])

        seeds = [generator.state.value for generator in self.seed_generators]
        stats_spec = [(self.stacked[i].dtype, self.stacked[i].shape[1:]) for i in self.state_indices]
        (outputs, seeds), stats = _scan(
            step, (inputs, seeds), [v.value for v in self.stacked], stats_spec if training else []
        )
        for generator, seed in zip(self.seed_generators, seeds):
            generator.state.assign(seed)
        for i, value in zip(self.state_indices if training else [], stats):
            self.stacked[i].assign(value)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    # -- per-unit weights: the unrolled format ------------------------------------------------------

    def get_unit_weights(self):
        """Each unit's weights as arrays, in the order of ``make_unit(...).weights``."""
        stacked = [keras.ops.convert_to_numpy(v) for v in self.stacked]
        return [[s[j] for s in stacked] for j in range(self.repeats)]

    def set_unit_weights(self, unit_weights):
        """Sets the stacked weights from a list of per-unit weight lists (as ``get_unit_weights`` gives)."""
        if len(unit_weights) != self.repeats:
            raise ValueError(f"{self.name!r} loops {self.repeats} units; received weights of {len(unit_weights)}.")
        for i, variable in enumerate(self.stacked):
            variable.assign(np.stack([np.asarray(w[i]) for w in unit_weights]))

    def save_own_variables(self, store):
        # An explicit order (the template's weights) that the unrolled-layout translation relies on.
        for i, variable in enumerate(self.stacked):
            store[str(i)] = variable

    def load_own_variables(self, store):
        if len(store.keys()) != len(self.stacked):
            raise ValueError(
                f"Layer {self.name!r} expects {len(self.stacked)} stacked variables; the file holds "
                f"{len(store.keys())}."
            )
        for i, variable in enumerate(self.stacked):
            variable.assign(store[str(i)])

    def get_config(self):
        config = super().get_config()
        config.update(unit=self.unit, unit_names=list(self.unit_names), remat=self.remat)
        return config


# --------------------------------------------------------------------------------------------------
# Models with looped stages: one weight format, and the unrolled twin
# --------------------------------------------------------------------------------------------------


def is_looped(model):
    """Whether ``model`` has a looped stage among its layers."""
    return any(isinstance(layer, ScannedStage) for layer in getattr(model, "layers", ()))


class _Recorder(saving_lib.H5IOStore):
    """A weights store that writes nothing and notes where Keras would put each variable."""

    def __init__(self):
        self.mode = "w"
        self.locations = {}
        self._path = ""

    def __bool__(self):
        return True

    def make(self, path, metadata=None):
        self._path = path
        return self

    def __setitem__(self, key, value):
        self.locations[id(value)] = (self._path, key)


def _unit_layout(stage):
    """Where each stacked variable's per-unit slice lives inside a unit's entry of a weights file."""
    recorder = _Recorder()
    saving_lib._save_state(stage.template(), recorder, None, "", set())
    layout = []
    for variable in stage.template().weights:
        path, key = recorder.locations[id(variable)]
        layout.append(f"{path}/vars/{key}" if path else f"vars/{key}")
    return layout


def _entry_names(model):
    """``[(layer, name in this model's weights file, [names in the unrolled model's file])]``.

    Keras files a functional model's layers by class name and a per-class counter, so the units of a
    looped stage shift the counters of the units after them.
    """
    looped_count, unrolled_count = {}, {}
    entries = []
    for layer in model.layers:
        looped = saving_lib._get_unique_name(to_snake_case(type(layer).__name__), looped_count)
        if isinstance(layer, ScannedStage):
            unit_class = to_snake_case(type(layer.template()).__name__)
            names = [saving_lib._get_unique_name(unit_class, unrolled_count) for _ in range(layer.repeats)]
        else:
            names = [saving_lib._get_unique_name(to_snake_case(type(layer).__name__), unrolled_count)]
        entries.append((layer, looped, names))
    return entries


def _copy_dataset(source, destination, path, data=None):
    dataset = destination.create_dataset(path, data=source[()] if data is None else data)
    for key, value in source.attrs.items():
        dataset.attrs[key] = value


def _translate(model, source_path, target_path, to_unrolled):
    """Rewrites a weights file of ``model`` between its own layout and the unrolled one."""
    with h5py.File(source_path, "r") as source, h5py.File(target_path, "w") as target:
        for key, value in source.attrs.items():
            target.attrs[key] = value
        for key in source:
            if key != "layers":
                source.copy(source[key], target, name=key)
        layers = target.require_group("layers")
        for layer, looped, names in _entry_names(model):
            if not isinstance(layer, ScannedStage):
                old, new = (looped, names[0]) if to_unrolled else (names[0], looped)
                if f"layers/{old}" in source:
                    source.copy(source[f"layers/{old}"], layers, name=new)
                continue
            for i, inner in enumerate(_unit_layout(layer)):
                stacked_path = f"layers/{looped}/vars/{i}"
                if to_unrolled:
                    stacked = source[stacked_path]
                    for j, name in enumerate(names):
                        _copy_dataset(stacked, target, f"layers/{name}/{inner}", stacked[j])
                else:
                    missing = [n for n in names if f"layers/{n}/{inner}" not in source]
                    if missing:
                        raise ValueError(
                            f"The weights file {source_path!r} has no entry layers/{missing[0]}/{inner}: "
                            f"it does not hold the units of {layer.name!r} of model {model.name!r}. Check "
                            "that it was saved from the same architecture and arguments."
                        )
                    first = source[f"layers/{names[0]}/{inner}"]
                    data = np.stack([source[f"layers/{n}/{inner}"][()] for n in names])
                    _copy_dataset(first, target, stacked_path, data)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LoopedModel(keras.Model):
    """A functional model with looped stages whose ``.weights.h5`` files have the unrolled layout.

    ``save_weights`` writes the file an unrolled model of the same architecture writes;
    ``load_weights`` reads such a file (or one in its own layout). ``.keras`` archives keep the
    stacked layout: they rebuild a looped model.
    """

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        path = os.fspath(filepath)
        if max_shard_size is not None or not path.endswith(".weights.h5"):
            raise ValueError(
                "A model with looped stages saves unsharded `.weights.h5` files; received "
                f"filepath={path!r}, max_shard_size={max_shard_size!r}. For other formats save its "
                "unrolled twin: keras_preresnet.stages.unroll(model).save_weights(...)."
            )
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")

        def write(temporary):
            # Keras writes the stacked layout to scratch space; the published file is its translation.
            with tempfile.TemporaryDirectory() as scratch:
                own = os.path.join(scratch, "looped.weights.h5")
                super(LoopedModel, self).save_weights(own)
                _translate(self, own, temporary, to_unrolled=True)

        if files.is_temporary(path):  # called by files.publish (checkpoints, the weights cache): no second one
            write(path)
        else:
            files.publish(path, write, suffix=files.WEIGHTS_SUFFIX)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        path = os.fspath(filepath)
        if not path.endswith(".weights.h5"):
            return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        with h5py.File(path, "r") as f:
            own_layout = any(name.startswith(to_snake_case(ScannedStage.__name__)) for name in f.get("layers", ()))
        if own_layout:
            return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            own = os.path.join(tmp, "looped.weights.h5")
            _translate(self, path, own, to_unrolled=False)
            return super().load_weights(own, skip_mismatch=skip_mismatch, **kwargs)


def functional_model(inputs, outputs, name=None):
    """``keras.Model(inputs, outputs)``, a ``LoopedModel`` when the graph has a looped stage."""
    model = keras.Model(inputs, outputs, name=name)
    return LoopedModel(inputs, outputs, name=name) if is_looped(model) else model


def _pairs(looped, unrolled):
    """``(layer of looped, its counterpart(s) in unrolled)`` for every layer with weights."""
    for layer in looped.layers:
        if isinstance(layer, ScannedStage):
            yield layer, [unrolled.get_layer(name) for name in layer.unit_names]
        elif layer.weights:
            yield layer, unrolled.get_layer(layer.name)


def copy_weights(source, target):
    """Copies weights between a looped model and its unrolled twin, in either direction."""
    to_unrolled = is_looped(source)
    looped, unrolled = (source, target) if to_unrolled else (target, source)
    for layer, counterpart in _pairs(looped, unrolled):
        if isinstance(layer, ScannedStage):
            if to_unrolled:
                for unit, weights in zip(counterpart, layer.get_unit_weights()):
                    unit.set_weights(weights)
            else:
                layer.set_unit_weights([unit.get_weights() for unit in counterpart])
        elif to_unrolled:
            counterpart.set_weights(layer.get_weights())
        else:
            layer.set_weights(counterpart.get_weights())


def unroll(model):
    """The unrolled twin of ``model``: the same network, weights and layer names, every unit a layer.

    A model without looped stages is returned as it is.
    """
    if not is_looped(model):
        return model

    def clone(layer):
        if not isinstance(layer, ScannedStage):
            return type(layer).from_config(layer.get_config())
        stage_units = [layer.make_unit(name) for name in layer.unit_names]

        def chain(x, **kwargs):
            for unit in stage_units:
                x = unit(x, **kwargs)
            return x

        return chain

    twin = keras.models.clone_model(model, clone_function=clone)
    twin = keras.Model(twin.input, twin.output, name=model.name)
    copy_weights(model, twin)
    return twin
