"""Parity of an exported artifact with the Keras model it came from, on real images."""

import dataclasses
import json
import os

import numpy as np

from keras_preresnet import files

# Float artifacts must reproduce the Keras probabilities to this absolute tolerance (the parity bar).
FLOAT_TOLERANCE = 1e-4
REPORT_FILENAME = "parity.json"


class ParityError(AssertionError):
    """An artifact that must match the Keras model does not."""


@dataclasses.dataclass
class ParityReport:
    """How closely one artifact reproduces the Keras model's probabilities.

    ``file`` is the artifact's name inside its version folder (``'.'`` for the SavedModel itself).
    ``tolerance`` is None for artifacts that are expected to differ (quantised TFLite); they report
    their agreement but cannot fail.
    """

    artifact: str
    file: str
    file_size_bytes: int
    images: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: float | None

    @property
    def passed(self):
        return self.tolerance is None or self.max_abs_diff <= self.tolerance

    def as_dict(self):
        return dict(dataclasses.asdict(self), passed=self.passed)


def size_of(path):
    """Bytes of a file, or of all files under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names
    )


def compare(artifact, path, reference, outputs, tolerance, file=None):
    """Builds the report of ``outputs`` (probabilities ``[N, classes]``) against the Keras ``reference``.

    ``path`` is the artifact on disk (its size is reported), ``file`` its name in the report
    (default: the base name of ``path``).
    """
    reference = np.asarray(reference, np.float64)
    outputs = np.asarray(outputs, np.float64)
    if outputs.shape != reference.shape:
        raise ParityError(f"{artifact} returned outputs of shape {outputs.shape}; Keras gives {reference.shape}.")
    diff = np.abs(outputs - reference)
    max_abs_diff = float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0
    agreement = float(np.mean(outputs.argmax(-1) == reference.argmax(-1))) if len(reference) else 1.0
    return ParityReport(artifact, file or os.path.basename(path), size_of(path), len(reference), max_abs_diff, agreement, tolerance)


def check(reports):
    """Raises ParityError naming every report that exceeds its tolerance."""
    failed = [r for r in reports if not r.passed]
    if failed:
        details = "; ".join(f"{r.artifact}: max |diff| {r.max_abs_diff:.3g} > {r.tolerance:g}" for r in failed)
        raise ParityError(f"Exported artifacts disagree with the Keras model: {details}. Nothing was published.")


def format_table(reports):
    """A fixed-width table of the reports, one artifact per line."""
    lines = [f"{'artifact':<34} {'size (MB)':>10} {'images':>6} {'max |diff|':>11} {'top-1 agree':>11} {'check':>8}"]
    for r in reports:
        check_text = "-" if r.tolerance is None else ("ok" if r.passed else "FAILED")
        lines.append(
            f"{r.artifact:<34} {r.file_size_bytes / 1e6:>10.2f} {r.images:>6d} {r.max_abs_diff:>11.3g} "
            f"{r.top1_agreement:>11.2%} {check_text:>8}"
        )
    return "\n".join(lines)


def save(reports, path, **context):
    """Writes the reports (and ``context``, e.g. the model name) as JSON to ``path``."""
    files.write_bytes(path, json.dumps(dict(context, reports=[r.as_dict() for r in reports]), indent=2) + "\n")
