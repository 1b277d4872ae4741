"""Per-class results of an evaluation: precision and recall from the confusion matrix, and class names.

The matrix counts test images by true class (rows) and top-1 prediction (columns). A class's recall is
its diagonal entry over its row (the share of its images found), its precision the diagonal over its
column (the share of its predictions that were right); a class never predicted has no precision.
"""

import numpy as np

from keras_preresnet.datasets import DATASETS, dataset_labels
from keras_preresnet.labels import numbered

# The command line prints the per-class table for at most this many classes (all go to --output).
PRINTED_CLASSES = 20


def class_names(dataset, classes):
    """The names of ``dataset``'s classes when the package knows them and the count matches, else '0', '1', ..."""
    names = dataset_labels(dataset) if dataset in DATASETS else None
    return list(names) if names is not None and len(names) == classes else list(numbered(classes))


def per_class(confusion, names):
    """A dict per class: name, precision and recall (None where undefined) and support (true images)."""
    confusion = np.asarray(confusion)
    hits = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    return [
        {
            "class": name,
            "precision": hits[i] / predicted[i] if predicted[i] else None,
            "recall": hits[i] / support[i] if support[i] else None,
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    ]


def table(rows):
    """The per-class rows as a text table."""
    width = max(len("class"), *(len(row["class"]) for row in rows))

    def percent(value):
        return "     -" if value is None else f"{100 * value:5.1f}%"

    lines = [f"{'class':<{width}}  precision  recall  images"]
    lines += [f"{row['class']:<{width}}     {percent(row['precision'])}  {percent(row['recall'])}  {row['support']:6d}"
              for row in rows]
    return "\n".join(lines)
