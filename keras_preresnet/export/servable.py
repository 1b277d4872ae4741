"""What an export needs besides the network: its serving name, its class labels and its preprocessing.

The preprocessing follows the model's layout (``ARCHITECTURES[key]['layout']``) and is the library's
``keras_preresnet.preprocessing.preprocess``: ImageNet nets get the released ResNet-200's evaluation
transform, CIFAR nets the per-channel normalisation of their training set on the 0-255 scale.
"""

import dataclasses
import os

import keras
import tensorflow as tf

from keras_preresnet import preprocessing, resolve
from keras_preresnet.labels import read_labels  # noqa: F401 (export API)
from keras_preresnet.layers import check_choice
from keras_preresnet.models import resolve_architecture  # noqa: F401 (export API)

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
        check_choice("preprocessing", self.preprocessing, PREPROCESSING)
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


def build(model_name, weights=None, labels=None, preprocessing_name=None, name=None):
    """Builds a named model (``'PreActResNet200'``) or a training run's model with serving information.

    Args:
        model_name: a public name (``'PreActResNet200'``), a key of ``keras_preresnet.models.ARCHITECTURES``,
            or a training run's ``model_dir`` (its run.json gives network, class names and preprocessing;
            its best weights are loaded).
        weights: None (random initialisation), ``'imagenet'`` or a Keras weights file. A file inside a
            training run brings that run's class names and preprocessing.
        labels: class labels (a sequence), the path of a file with one label per line, or the number of
            classes (as ``classes=`` in the builders; labelled with the dataset's names where they fit,
            else ``'0'``, ``'1'``, ...). Sets the classifier's size. By default the dataset's classes.
            (``keras_preresnet.resolve`` decides all of this, as for ``python -m keras_preresnet.predict``.)
        preprocessing_name: ``'imagenet'``, ``'cifar10'`` or ``'cifar100'``; by default the run's, else
            from the layout.
        name: the serving name; by default the public model name.
    """
    # A servable is for export, which wants every unit as a layer (no looped stages).
    found = resolve.resolve(model_name, weights, labels, preprocessing_name, scan_units=False)
    return Servable(found.model, name or found.name, found.labels, found.preprocessing)
