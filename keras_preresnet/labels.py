"""Class labels: label files, the datasets' own names, and ``classes=`` given as a number or a file."""

import os

from keras_preresnet import preprocessing
from keras_preresnet.datasets import dataset_labels


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
    """The class names of the preprocessing's training set where the class count matches it, else None."""
    if preprocessing_name not in preprocessing.PREPROCESSING:
        return None
    labels = dataset_labels(preprocessing.PREPROCESSING[preprocessing_name]["dataset"])
    return labels if labels is not None and classes == len(labels) else None


def parse_classes(value):
    """``classes`` as the builders take it (a number) or a label file -> ``(count, labels or None)``.

    A number is a positive integer or its text (``"37"``); anything else is read as a label file.
    """
    if value is None:
        return None, None
    if isinstance(value, bool):
        raise ValueError(f"`classes` must be a number of classes or a label file; received {value!r}.")
    text = str(value).strip()
    if isinstance(value, int) or text.lstrip("-").isdigit():
        count = int(text)
        if count < 1:
            raise ValueError(f"`classes` must be a positive number of classes or a label file; received {value!r}.")
        return count, None
    labels = read_labels(value)
    return len(labels), labels


def numbered(count):
    """The labels of classes without names: ``'0'``, ``'1'``, ..."""
    return tuple(str(i) for i in range(count))


def labels_for(count, labels, preprocessing_name):
    """The labels to show: the given ones, else the dataset's names for ``count``, else ``'0'``, ``'1'``..."""
    if labels is not None:
        return tuple(labels)
    return default_labels(preprocessing_name, count) or numbered(count)
