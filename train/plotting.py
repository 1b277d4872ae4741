"""Training curves drawn like the paper's figures: training loss dashed, test error solid, twin axes."""

import io
import os

from keras_preresnet import files
from train.reporting import CURVES_PNG


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
    from matplotlib import pyplot as plt

    figure = draw_curves(rows, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    files.write_bytes(path, buffer.getvalue())


def write_curves(model_dir, rows, title=""):
    plot_curves(rows, os.path.join(model_dir, CURVES_PNG), title)
