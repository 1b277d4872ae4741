"""A training run's folder as a model: ``run.json`` says how to rebuild the network, its class names and
its preprocessing; ``best.weights.h5`` (else ``last.weights.h5``) holds the weights.

``python -m keras_preresnet.train`` writes the folder; ``python -m keras_preresnet.predict --model=RUN`` and
``python -m keras_preresnet.export --model=RUN`` read it, so neither needs the classes or the preprocessing again.
"""

import os

from keras_preresnet import labels as labels_lib
from keras_preresnet import models, preprocessing, runtimes

RUN_JSON = "run.json"
BEST_WEIGHTS = "best.weights.h5"
LAST_WEIGHTS = "last.weights.h5"
# build_resnet arguments a run records (``input_shape`` as ``image_size``).
NETWORK_KEYS = ("depth", "unit", "shortcut", "shortcut_options", "projection", "layout", "form", "image_size",
                "classes")


def network_record(**arguments):
    """The ``network`` entry of run.json from ``build_resnet`` arguments (``NETWORK_KEYS``)."""
    unknown = sorted(set(arguments) - set(NETWORK_KEYS))
    if unknown:
        raise ValueError(f"Unknown network arguments {unknown}; a run records {NETWORK_KEYS}.")
    return {key: arguments.get(key) for key in NETWORK_KEYS}


def is_run(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, RUN_JSON))


def read_run(model_dir):
    """The record of the run in ``model_dir``; a clear error where it cannot rebuild the network."""
    path = os.path.join(os.fspath(model_dir), RUN_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir!r} is not a training run: it has no {RUN_JSON}.")
    return runtimes.read_json_record(
        path, ("network", "class_names", "preprocessing"),
        "The run was started by an older trainer: resume it once with the same `python -m keras_preresnet.train` command "
        "(it rewrites run.json), or build the model by name with --weights.",
    )


def weights_path(model_dir):
    """The run's best weights, else its last; an error if it has written neither yet."""
    for name in (BEST_WEIGHTS, LAST_WEIGHTS):
        path = os.path.join(os.fspath(model_dir), name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"The run {model_dir!r} has no {BEST_WEIGHTS} or {LAST_WEIGHTS} yet; train an epoch first.")


def labels(record):
    """The run's class names, or the class indices as text where the data had no names."""
    names = record.get("class_names")
    return tuple(names) if names else labels_lib.numbered(record["network"]["classes"])


def build_from_run(model_dir, **kwargs):
    """The run's network (softmax outputs) with its best weights; returns ``(model, record)``.

    ``kwargs`` go to ``build_resnet`` (e.g. ``include_preprocessing=True``)."""
    record = read_run(model_dir)
    network = dict(record["network"])
    size = network.pop("image_size")
    model = models.build_resnet(input_shape=(size, size, 3), weights=weights_path(model_dir), **network, **kwargs)
    return model, record


def preprocessing_record(dataset, image_size):
    """The ``preprocessing`` entry of run.json for a training set name (``'imagenet2012'``, ``'cifar10'``...)."""
    names = {spec["dataset"]: name for name, spec in preprocessing.PREPROCESSING.items()}
    if dataset not in names:
        raise ValueError(f"No preprocessing is known for dataset {dataset!r}; known: {sorted(names)}.")
    return dict(name=names[dataset], image_size=int(image_size))
