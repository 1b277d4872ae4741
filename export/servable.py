"""What an export needs besides the network: its serving name, its class labels and its preprocessing.

The preprocessing follows the model's layout (``ARCHITECTURES[key]['layout']``) and is the library's
``keras_preresnet.preprocessing.preprocess``: ImageNet nets get the released ResNet-200's evaluation
transform, CIFAR nets the per-channel normalisation of their training set on the 0-255 scale.
"""

import dataclasses
import os

import keras
import tensorflow as tf

import keras_preresnet
from keras_preresnet import models, preprocessing
from keras_preresnet.datasets import CIFAR10_CLASSES

PREPROCESSING = tuple(preprocessing.PREPROCESSING)


@dataclasses.dataclass
class Servable:
    """A Keras classifier with what serving it needs.

    Attributes:
        model: the Keras model; input ``[batch, size, size, 3]`` preprocessed floats, output class
            probabilities ``[batch, classes]``.
        name: the serving name (the TF Serving model name and the artifact folder name).
        labels: one label per output class, in output order.
        preprocessing: ``'imagenet'``, ``'cifar10'`` or ``'cifar100'``: how an RGB image becomes input.
    """

    model: keras.Model
    name: str
    labels: tuple
    preprocessing: str

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSING:
            raise ValueError(
                f"`preprocessing` must be one of {PREPROCESSING}; received preprocessing={self.preprocessing!r}."
            )
        shape = tuple(self.model.input_shape)
        if len(shape) != 4 or shape[-1] != 3 or None in shape[1:3] or shape[1] != shape[2]:
            raise ValueError(
                f"Exported models take square RGB images of a fixed size; model {self.model.name!r} has "
                f"input shape {shape}. Build it with include_top=True or a fixed input_shape."
            )
        classes = self.model.output_shape[-1]
        self.labels = tuple(str(label) for label in self.labels)
        if len(self.labels) != classes:
            raise ValueError(
                f"Model {self.model.name!r} has {classes} output classes but {len(self.labels)} labels were "
                "given; pass one label per class (a --classes file with one label per line)."
            )
        if not self.name or os.sep in self.name or self.name.startswith("."):
            raise ValueError(f"The model name must be a plain folder name; received name={self.name!r}.")

    @property
    def image_size(self):
        return int(self.model.input_shape[1])

    def preprocess(self, image):
        """One decoded RGB image ``[H, W, 3]`` (0-255) -> the model's float input ``[size, size, 3]``.

        A TensorFlow function, used both in the serving graph and to prepare parity and calibration
        images, so every artifact is compared on exactly what serving feeds it.
        """
        return preprocessing.preprocess(tf.convert_to_tensor(image), self.preprocessing, self.image_size)


def resolve_architecture(model_name):
    """``'PreActResNet200'`` or ``'preact_resnet200'`` -> ``'preact_resnet200'`` (a key of ARCHITECTURES)."""
    by_name = {key.lower(): key for key in models.ARCHITECTURES}
    by_name.update({models.public_name(key).lower(): key for key in models.ARCHITECTURES})
    key = by_name.get(str(model_name).lower())
    if key is None:
        known = ", ".join(models.public_name(key) for key in models.ARCHITECTURES)
        raise ValueError(f"Unknown model {model_name!r}; known models: {known}.")
    return key


def read_labels(path):
    """Reads class labels from a text file, one per line in output order (blank lines are an error)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Class label file {path!r} not found; give a text file with one label per line.")
    with open(path, encoding="utf-8") as f:
        labels = [line.rstrip("\r\n") for line in f]
    while labels and not labels[-1].strip():
        labels.pop()
    blank = [i + 1 for i, label in enumerate(labels) if not label.strip()]
    if not labels or blank:
        raise ValueError(
            f"Class label file {path!r} must hold one non-empty label per line; "
            + (f"lines {blank[:5]} are blank." if blank else "it is empty.")
        )
    return tuple(labels)


def default_labels(preprocessing_name, classes):
    """The dataset's own class names where the class count matches it, else None."""
    if preprocessing_name == "imagenet" and classes == preprocessing.NUM_CLASSES:
        return tuple(name for _, name in preprocessing.imagenet_classes())
    if preprocessing_name == "cifar10" and classes == len(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return None


def build(model_name, weights=None, labels=None, preprocessing_name=None, name=None):
    """Builds a named model (``'PreActResNet200'``) with its weights and serving information.

    Args:
        model_name: a public name (``'PreActResNet200'``) or a key of ``keras_preresnet.models.ARCHITECTURES``.
        weights: None (random initialisation), ``'imagenet'`` or a Keras weights file.
        labels: class labels (a sequence) or the path of a file with one label per line. Their number sets
            the classifier's size, for weights trained with a custom head. By default the dataset's classes.
        preprocessing_name: ``'imagenet'``, ``'cifar10'`` or ``'cifar100'``; by default from the layout.
        name: the serving name; by default the public model name.
    """
    key = resolve_architecture(model_name)
    layout = models.ARCHITECTURES[key]["layout"]
    if preprocessing_name is None:
        preprocessing_name = "imagenet" if layout == models.IMAGENET else "cifar10"
    if isinstance(labels, (str, os.PathLike)):
        labels = read_labels(labels)
    classes = len(labels) if labels is not None else None
    model = keras_preresnet.build_named(key, weights=weights, classes=classes)
    if labels is None:
        labels = default_labels(preprocessing_name, model.output_shape[-1])
        if labels is None:
            raise ValueError(
                f"No class names are known for {model.output_shape[-1]} classes with {preprocessing_name!r} "
                "preprocessing; pass labels (--classes FILE, one label per line)."
            )
    return Servable(model, name or models.public_name(key), tuple(labels), preprocessing_name)
