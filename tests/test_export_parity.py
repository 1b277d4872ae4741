"""export.parity: the reports every export prints and saves."""

import json

import numpy as np
import pytest

from keras_preresnet.export import parity


def _probabilities(seed, n=6, classes=4):
    logits = np.random.default_rng(seed).normal(size=(n, classes))
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def test_report_measures_max_abs_diff_top1_agreement_and_size(tmp_path):
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"x" * 1234)
    reference = _probabilities(0)
    outputs = reference.copy()
    outputs[0, 0] += 3e-5
    outputs[1] = outputs[1][::-1]  # changes that row's top-1 unless symmetric
    changed = reference[1].argmax() != outputs[1].argmax()
    report = parity.compare("fake", artifact, reference, outputs, parity.FLOAT_TOLERANCE)
    assert report.file_size_bytes == 1234
    assert report.max_abs_diff == pytest.approx(np.abs(outputs - reference).max())
    assert report.top1_agreement == pytest.approx(1 - changed / 6)
    assert report.file == "model.bin"


def test_float_report_fails_beyond_tolerance_and_check_raises(tmp_path):
    reference = _probabilities(1)
    ok = parity.compare("close", tmp_path, reference, reference + 5e-5, parity.FLOAT_TOLERANCE)
    far = parity.compare("far", tmp_path, reference, reference + 2e-4, parity.FLOAT_TOLERANCE)
    assert ok.passed and not far.passed
    parity.check([ok])
    with pytest.raises(parity.ParityError, match="far: max"):
        parity.check([ok, far])


def test_nan_outputs_never_pass(tmp_path):
    reference = _probabilities(2)
    report = parity.compare("nan", tmp_path, reference, np.full_like(reference, np.nan), parity.FLOAT_TOLERANCE)
    assert not report.passed


def test_quantised_report_has_no_tolerance_and_cannot_fail(tmp_path):
    reference = _probabilities(3)
    report = parity.compare("int8", tmp_path, reference, reference + 0.05, None)
    assert report.passed and report.tolerance is None


def test_save_and_table(tmp_path):
    reference = _probabilities(4)
    report = parity.compare("tflite/float32", tmp_path, reference, reference, parity.FLOAT_TOLERANCE)
    parity.save([report], tmp_path / "parity.json", model="tiny")
    saved = json.loads((tmp_path / "parity.json").read_text())
    assert saved["model"] == "tiny"
    assert saved["reports"][0]["artifact"] == "tflite/float32" and saved["reports"][0]["passed"] is True
    table = parity.format_table([report])
    assert "tflite/float32" in table and "100.00%" in table
