"""The datasets the paper uses, as facts (classes, normalisation, image sizes) decided once, and readers
for the CIFAR-10/100 python-pickle batches (the layout of the original archives)."""

import dataclasses
import functools
import json
import os
import pickle

import numpy as np

from keras_preresnet import defaults

CLASS_INDEX_PATH = os.path.join(os.path.dirname(__file__), "data", "imagenet_class_index.json")
# Where the command lines (demo, plot_layer_responses) and the tests look for CIFAR when not told.
CIFAR_DIR_ENV = "KERAS_PRERESNET_CIFAR_DIR"
_CIFAR_FILES = {
    ("cifar10", "train"): ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]),
    ("cifar10", "test"): ("cifar-10-batches-py", ["test_batch"]),
    ("cifar100", "train"): ("cifar-100-python", ["train"]),
    ("cifar100", "test"): ("cifar-100-python", ["test"]),
}
_LABEL_KEYS = {"cifar10": "labels", "cifar100": "fine_labels"}

# CIFAR-10's label names in label order (batches.meta of the original archive).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What the library knows of a dataset.

    Attributes:
        classes: number of classes.
        mean, std: per-channel normalisation on the 0-255 scale.
        image_size: the training and test crop.
        eval_resize: the shorter side images are resized to before the centre ``image_size`` crop at
            test time (fb.resnet.torch: 256 for 224 on ImageNet; CIFAR images are used as they are).
        labels: class names in label order, where the library ships them.
    """

    classes: int
    mean: tuple
    std: tuple
    image_size: int
    eval_resize: int
    labels: tuple = None

    def eval_resize_for(self, image_size):
        """The test-time shorter side for a crop of ``image_size``, keeping ``eval_resize / image_size``."""
        return max(image_size, round(image_size * self.eval_resize / self.image_size))


DATASETS = {
    "cifar10": Dataset(10, defaults.CIFAR10_MEAN, defaults.CIFAR10_STD, 32, 32, CIFAR10_CLASSES),
    "cifar100": Dataset(100, defaults.CIFAR100_MEAN, defaults.CIFAR100_STD, 32, 32),
    "imagenet2012": Dataset(
        1000, tuple(255 * m for m in defaults.IMAGENET_MEAN), tuple(255 * s for s in defaults.IMAGENET_STD), 224, 256
    ),
}


@functools.lru_cache(maxsize=None)
def imagenet_classes():
    """The 1000 ImageNet classes as ``((wnid, name), ...)`` in the model's output order (sorted wnids)."""
    with open(CLASS_INDEX_PATH, encoding="utf-8") as f:
        rows = json.load(f)
    return tuple((str(wnid), str(name)) for wnid, name in rows)


def dataset_labels(dataset):
    """The class names of a dataset of ``DATASETS`` in label order, or None where none ship."""
    if dataset == "imagenet2012":
        return tuple(name for _, name in imagenet_classes())
    return DATASETS[dataset].labels


def load_cifar(root, name="cifar10", split="train"):
    """Reads CIFAR pickle batches under ``root`` into ``(images uint8 [N, 32, 32, 3], labels int64 [N])``.

    ``root`` is the folder holding ``cifar-10-batches-py/`` or ``cifar-100-python/`` (or that folder
    itself). Batches that hold only part of the original images are read as they are.
    """
    if (name, split) not in _CIFAR_FILES:
        raise ValueError(
            f"Unknown CIFAR set {name!r}/{split!r}; use name in ('cifar10', 'cifar100') and "
            "split in ('train', 'test')."
        )
    folder, files = _CIFAR_FILES[(name, split)]
    root = os.fspath(root)
    base = root if os.path.basename(os.path.normpath(root)) == folder else os.path.join(root, folder)
    images, labels = [], []
    for filename in files:
        path = os.path.join(base, filename)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"CIFAR batch {path!r} not found. Point `root` at the folder that holds {folder!r} "
                "(the extracted python version of the dataset)."
            )
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            data = np.asarray(batch["data"], dtype=np.uint8)
            batch_labels = batch[_LABEL_KEYS[name]]
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path!r} is not a readable CIFAR python batch: {error}") from error
        if data.ndim != 2 or data.shape[1] != 3072 or len(batch_labels) != len(data):
            raise ValueError(f"{path!r} holds data of shape {data.shape}; expected [N, 3072] with N labels.")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)
