"""Figures drawn like the papers': a run's curves (training loss dashed, test error solid, twin axes),
a paper table's runs overlaid (Fig. 6 of the ResNet paper) and an evaluation's confusion matrix."""

import io
import os

import numpy as np

from keras_preresnet import files
from keras_preresnet.train.reporting import CURVES_PNG


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
    files.write_bytes(path, buffer.getvalue())


def write_curves(model_dir, rows, title=""):
    plot_curves(rows, os.path.join(model_dir, CURVES_PNG), title)


def draw_table(table, results):
    """A paper table's runs overlaid as the ResNet paper's Fig. 6 draws them: one panel per
    ``row.panel`` side by side, training error dashed and test error bold, one colour per ``row.series``
    (the same in every panel). ``results`` maps a row's config to its metrics.csv rows; rows without
    results are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = list(dict.fromkeys(row.panel for row in table.rows))
    series = list(dict.fromkeys(row.series for row in table.rows))
    palette = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    figure, axes = plt.subplots(1, len(panels), figsize=(max(7, 5 * len(panels)), 4.5), dpi=100, sharey=True, squeeze=False)
    for axis, panel in zip(axes[0], panels):
        for row in table.rows:
            metrics = results.get(row.config)
            if row.panel != panel or not metrics:
                continue
            colour = palette(series.index(row.series) % palette.N)
            steps = [m["step"] for m in metrics]
            marker = dict(marker="o", markersize=3) if len(metrics) < 20 else {}
            axis.plot(steps, [m["train_error"] for m in metrics], "--", color=colour, linewidth=1, **marker)
            axis.plot(steps, [m["test_error"] for m in metrics], "-", color=colour, linewidth=2.5, label=row.label,
                      **marker)
        axis.set_title(panel)
        axis.set_xlabel("iterations")
        if axis.get_lines():
            axis.legend(loc="upper right", fontsize="small")
    axes[0][0].set_ylabel("error (%)  (dashed: training, bold: test)")
    figure.suptitle(table.title, fontsize="medium")
    figure.tight_layout()
    return figure


def plot_table(table, results, path):
    """Draws ``draw_table(table, results)`` to the PNG file ``path``."""
    _save_figure(draw_table(table, results), path)



def plot_confusion(confusion, names, path, title=""):
    """Draws the confusion matrix (rows: true class, columns: prediction) to the PNG file ``path``, each
    row as shares of the class's images; class names label the axes up to 30 classes."""
    import matplotlib

    matplotlib.use("Agg")
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
