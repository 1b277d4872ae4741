"""Per-class precision and recall from a confusion matrix, class names, and the confusion-matrix picture."""

import os

import numpy as np
import pytest

from keras_preresnet.train import confusion, plotting

# Rows: true class, columns: prediction. Class "c" is never predicted; class "b" has no test images.
MATRIX = np.array([[3, 1, 0],
                   [0, 0, 0],
                   [2, 2, 0]])


def test_precision_is_per_prediction_and_recall_per_true_class():
    rows = confusion.per_class(MATRIX, ["a", "b", "c"])
    a, b, c = rows
    assert a == {"class": "a", "precision": pytest.approx(3 / 5), "recall": pytest.approx(3 / 4), "support": 4}
    assert b["precision"] == 0.0 and b["recall"] is None and b["support"] == 0
    assert c["precision"] is None and c["recall"] == 0.0 and c["support"] == 4
    text = confusion.table(rows)
    assert text.splitlines()[1].split() == ["a", "60.0%", "75.0%", "4"]
    assert text.splitlines()[3].split() == ["c", "-", "0.0%", "4"]


def test_class_names_come_from_the_dataset_when_the_count_matches():
    assert confusion.class_names("cifar10", 10)[:2] == ["airplane", "automobile"]
    assert confusion.class_names("imagenet2012", 1000)[0] == "tench"
    assert confusion.class_names("cifar10", 3) == ["0", "1", "2"]


def test_confusion_picture_is_a_png_written_atomically(tmp_path):
    path = tmp_path / "confusion.png"
    plotting.plot_confusion(MATRIX, ["a", "b", "c"], str(path), title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["confusion.png"]
