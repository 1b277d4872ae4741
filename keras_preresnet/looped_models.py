"""Models with looped stages: one weight format, and the unrolled twin.

Weight files keep the unrolled layout (``conv3_block7`` and its ``conv3_block7_2_conv``): a model with
looped stages (``stages.ScannedStage``) is a ``LoopedModel``, whose ``save_weights``/``load_weights``
translate between its stacked variables and the per-unit entries, so one ``.weights.h5`` loads into
either form. ``unroll`` returns the straight-line twin of a looped model (for exporters, BatchNorm
folding and the Torch7 converter). The translation reads Keras' weight-file layout
(``keras.src.saving.saving_lib``), which is why setup.py pins Keras below the next minor release.
"""

import os
import tempfile

import h5py
import keras
import numpy as np
from keras.src.saving import saving_lib
from keras.src.utils.naming import to_snake_case

from keras_preresnet import files
from keras_preresnet.stages import PACKAGE, ScannedStage


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


@keras.saving.register_keras_serializable(package=PACKAGE)
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
                "unrolled twin: keras_preresnet.unroll(model).save_weights(...)."
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

