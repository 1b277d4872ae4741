"""What a run leaves in model_dir besides checkpoints: metrics.csv, metrics.json, curves.png.

Every file is written to a temporary name and renamed into place, so a run killed at any moment leaves
either the previous or the new version, never a torn file.
"""

import csv
import io
import json
import math
import os

from keras_preresnet import files

METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
CURVES_PNG = "curves.png"
COLUMNS = (
    "epoch", "step", "learning_rate", "train_loss", "train_error", "test_loss", "test_error",
    "test_top5_error", "epoch_seconds", "images_per_second",
)


def read_metrics(model_dir):
    """The rows of ``metrics.csv`` as dicts of floats (epoch and step as ints); [] if there is none."""
    path = os.path.join(model_dir, METRICS_CSV)
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        {key: int(value) if key in ("epoch", "step") else float(value) for key, value in row.items()}
        for row in rows
    ]


def write_metrics(model_dir, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format(row[key]) for key in COLUMNS})
    files.write_bytes(os.path.join(model_dir, METRICS_CSV), buffer.getvalue())


def _format(value):
    return value if isinstance(value, int) else f"{value:.6g}"


def write_summary(model_dir, summary):
    files.write_bytes(os.path.join(model_dir, METRICS_JSON), json.dumps(summary, indent=2, sort_keys=True) + "\n")


def best_row(rows):
    finite = [row for row in rows if math.isfinite(row["test_error"])]
    return min(finite, key=lambda row: row["test_error"]) if finite else None
