"""Training curves drawn like the paper's figures (training loss dashed, test error solid, twin axes), and
an evaluation's confusion matrix."""

import io
import os

from train.reporting import CURVES_PNG, atomic_write


def draw_curves(rows, title=""):
    """A figure of ``rows`` of metrics.csv: training loss (left axis, dashed) and test error in %
    (right axis, solid) against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [row["step"] for row in rows]
    figure, loss_axis = plt.subplots(figsize=(6, 4), dpi=100)
    error_axis = loss_axis.twinx()
    # Markers only while there are too few points for a line to show.
    marker = dict(marker="o", markersize=3) if len(rows) < 20 else {}
    loss_axis.plot(steps, [row["train_loss"] for row in rows], "--", color="tab:blue", label="training loss",
                   **marker)
    error_axis.plot(steps, [row["test_error"] for row in rows], "-", color="tab:red", label="test error", **marker)
    loss_axis.set_xlabel("iterations")
    loss_axis.set_ylabel("training loss")
    error_axis.set_ylabel("test error (%)")
    lines = loss_axis.get_lines() + error_axis.get_lines()
    loss_axis.legend(lines, [line.get_label() for line in lines], loc="upper right")
    if title:
        loss_axis.set_title(title)
    figure.tight_layout()
    return figure


def plot_curves(rows, path, title=""):
    """Draws ``rows`` to the PNG file ``path``."""
    _save_figure(draw_curves(rows, title), path)


def _save_figure(figure, path):
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())


def write_curves(model_dir, rows, title=""):
    plot_curves(rows, os.path.join(model_dir, CURVES_PNG), title)


def plot_confusion(confusion, names, path, title=""):
    """Draws the confusion matrix (rows: true class, columns: prediction) to the PNG file ``path``, each
    row as shares of the class's images; class names label the axes up to 30 classes."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    confusion = np.asarray(confusion, dtype=np.float64)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    classes = len(names)
    size = min(12, 3 + 0.45 * classes)
    figure, axis = plt.subplots(figsize=(size, size), dpi=100)
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class's images")
    if classes <= 30:
        axis.set_xticks(range(classes), names, rotation=90)
        axis.set_yticks(range(classes), names)
        if classes <= 12:
            for i in range(classes):
                for j in range(classes):
                    axis.text(j, i, int(confusion[i, j]), ha="center", va="center",
                              color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    if title:
        axis.set_title(title)
    figure.tight_layout()
    _save_figure(figure, path)
