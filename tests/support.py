"""What several test modules need alike: the repository's root, subprocess environments, small training
settings, the one-device strategy and tensors as NumPy arrays."""

import os

import keras

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def to_numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def subprocess_env(**extra):
    """The environment of a command line run from a test: this checkout first on the path; no cluster
    (TF_CONFIG) unless given."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    if "TF_CONFIG" not in extra:
        env.pop("TF_CONFIG", None)
    return env


def small_settings(model_dir, data_dir, **values):
    """``trainer.Settings`` of a small CIFAR run: depth 8, the public code's recipe unscaled, no progress bar."""
    from keras_preresnet.train import trainer

    values = dict(dict(depth=8, progress=False, recipe="cifar_public_code", lr_scaling="none"), **values)
    return trainer.Settings(model_dir=None if model_dir is None else str(model_dir), data_dir=str(data_dir), **values)


def one_device_strategy():
    from keras_preresnet.train import distribute

    return distribute.make_strategy("one_device")
