"""Figures drawn like the papers': a run's curves (training loss dashed, test error solid, twin axes) and a
table's runs overlaid (Fig. 6 of the ResNet paper)."""

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
    _save(draw_curves(rows, title), path)


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
    _save(draw_table(table, results), path)


def _save(figure, path):
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())
