"""Which model is this, and how is its input prepared: ``--model`` as the command lines take it (a builder
name with weights and classes, a training run's folder, or an exported SavedModel, ``.tflite`` or
``.onnx``) -> the model or its runner, its labels and its preprocessing. ``python -m keras_preresnet.predict``
and the exporters' ``build`` both ask here."""

import dataclasses
import os

from keras_preresnet import labels as labels_lib
from keras_preresnet import models, preprocessing, runs, runtimes
from keras_preresnet.layers import check_choice


@dataclasses.dataclass
class Resolved:
    """A model with what running it needs.

    ``model`` is the Keras model (softmax outputs) or None for an exported artifact, which ``runner``
    runs instead (``runner.predict(batch) -> probabilities``). ``name`` is the public model name (an
    artifact's or an unnamed run's: its path's last part)."""

    model: object
    runner: object
    labels: tuple
    preprocessing: str
    image_size: int
    name: str
    description: str


def _artifact(path):
    """The runner and serving record of an exported model at ``path``, or None if it is none."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return runtimes.SavedModelClassifier(path), os.path.join(path, runtimes.SAVED_MODEL_RECORD)
    if path.lower().endswith(".tflite") and os.path.isfile(path):
        return runtimes.LiteRTModel(path), os.path.join(os.path.dirname(path), runtimes.RECORD_FILENAME)
    if path.lower().endswith(".onnx") and os.path.isfile(path):
        return runtimes.OnnxModel(path), os.path.join(os.path.dirname(path), runtimes.RECORD_FILENAME)
    return None


def _run_of(weights):
    """The training run a weights file belongs to (its folder holds run.json), or None."""
    if not isinstance(weights, (str, os.PathLike)) or weights == "imagenet":
        return None
    folder = os.path.dirname(os.path.abspath(weights))
    return runs.read_run(folder) if runs.is_run(folder) else None


def _classes(classes):
    """``classes``: None, a number, a label file or a sequence of labels -> ``(count, labels or None)``."""
    if classes is None or isinstance(classes, (str, os.PathLike, int)):
        return labels_lib.parse_classes(classes)
    return len(classes), tuple(str(label) for label in classes)


def _resolved(model, labels, preprocessing_name, name, description):
    size, classes = model.input_shape[1], model.output_shape[-1]
    if size is None:
        raise ValueError(f"Model {model.name!r} has no fixed input size; build it with include_top=True.")
    if len(labels) != classes:
        raise ValueError(
            f"Model {model.name!r} has {classes} output classes but {len(labels)} labels were given; pass one "
            "label per class (a --classes file with one label per line)."
        )
    return Resolved(model, None, tuple(labels), preprocessing_name, int(size), name, description)


def resolve(model, weights=None, classes=None, preprocessing_name=None, artifacts=False, **build_kwargs):
    """``model`` (a builder name, a training run's folder, or with ``artifacts`` an exported model) ->
    ``Resolved``.

    ``weights`` (None, ``'imagenet'``, a ``.t7`` or a Keras weights file; one inside a training run brings
    that run's classes and preprocessing) and ``classes`` (a number, a label file or the labels) apply to
    a builder name; a run brings its weights, and ``classes`` may rename its labels. ``preprocessing_name``
    defaults to the run's or the layout's training set. Labels: the given ones, else the training set's
    names where the class count fits, else ``'0'``, ``'1'``, ... ``build_kwargs`` go to the builder.
    """
    path = os.fspath(model)
    count, labels = _classes(classes)
    if runs.is_run(path):
        if weights is not None:
            raise ValueError("A training run brings its own weights (best.weights.h5); leave --weights out.")
        keras_model, record = runs.build_from_run(path, **build_kwargs)
        network = record["network"]
        key = models.named_architecture(network["depth"], network["unit"], network["layout"], network["form"])
        name = models.public_name(key) if key else os.path.basename(os.path.normpath(path))
        return _resolved(keras_model, labels or runs.labels(record),
                         preprocessing_name or record["preprocessing"]["name"], name, f"training run {path}")
    found = _artifact(path) if artifacts else None
    if found is not None:
        if weights is not None or classes is not None:
            raise ValueError("--weights and --classes apply to a builder name; an exported model brings its own.")
        runner, record_path = found
        record = runtimes.read_record(record_path)
        return Resolved(None, runner, tuple(record["labels"]), record["preprocessing"], int(record["image_size"]),
                        os.path.basename(os.path.normpath(path)), path)
    if artifacts and os.path.exists(path):
        raise ValueError(
            f"--model={path!r} is neither a training run (a folder with run.json), an exported SavedModel "
            "folder, a .tflite nor an .onnx file."
        )
    key = models.resolve_architecture(path)
    run = _run_of(weights)
    if run is not None:
        count = count or run["network"]["classes"]
        labels = labels if labels is not None else runs.labels(run)
        preprocessing_name = preprocessing_name or run["preprocessing"]["name"]
    if preprocessing_name is None:
        preprocessing_name = preprocessing.default_preprocessing(models.ARCHITECTURES[key]["layout"], count)
    check_choice("preprocessing", preprocessing_name, tuple(preprocessing.PREPROCESSING))
    keras_model = models.build_named(key, weights=weights, classes=count, **build_kwargs)
    labels = labels_lib.labels_for(keras_model.output_shape[-1], labels, preprocessing_name)
    return _resolved(keras_model, labels, preprocessing_name, models.public_name(key),
                     f"{models.public_name(key)} (weights={weights})")
