"""Helpers shared by the model tests."""

import h5py
import keras
import numpy as np


def weights_file_arrays(path):
    """Every array of a Keras ``.weights.h5`` file, by its path inside the file."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def batch_norms(layer):
    """Every BatchNormalization in ``layer`` (a model or a unit), nested ones included."""
    return [l for l in layer._flatten_layers(include_self=True, recursive=True)
            if isinstance(l, keras.layers.BatchNormalization)]


def randomize_batchnorm(layer, seed=0):
    """Gives every BatchNorm non-trivial gamma, beta and moving statistics, so that inference differs
    from the identity and checks of unit orders, folding or conversion cannot pass by accident."""
    rng = np.random.RandomState(seed)
    for bn in batch_norms(layer):
        c = bn.gamma.shape[0]
        bn.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                        rng.uniform(0.5, 2.0, c)])
