"""Stages whose repeated units run as one loop, so that compiling a network costs the same at any depth.

After its first unit, every unit of a stage has the same shapes. ``ScannedStage`` builds one template
unit, holds the weights of all those units stacked along a leading axis, and runs the template once per
unit with a scan over the stacked weights (``lax.scan`` on JAX, a ``tf.while_loop`` on TensorFlow): the
traced program holds one unit body per stage instead of one per unit. BatchNorm moving statistics come
out of the loop per unit and are written back; dropout shortcuts carry their random seed through the
loop, so each unit draws its own mask. ``remat=True`` checkpoints the loop body: the backward pass keeps
each unit's input and recomputes the rest of the unit.

Two neighbours finish the job: ``loop_convolutions`` gives the loop body's convolutions gradients that
XLA:CPU runs fast, and ``looped_models`` keeps weight files in the unrolled layout (``LoopedModel``,
``unroll``).
"""

import keras
import numpy as np

from keras_preresnet.loop_convolutions import use_loop_convolutions

PACKAGE = "keras_preresnet"  # the Keras registration package of the looped layers

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


@keras.saving.register_keras_serializable(package=PACKAGE)
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
        use_loop_convolutions(template)
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

