"""metrics.csv / metrics.json written atomically, and read back for resumed runs."""

import json
import os

import pytest

from keras_preresnet.train import reporting

ROW = dict(epoch=1, step=390, learning_rate=0.1, train_loss=1.5, train_error=55.0, test_loss=1.3,
           test_error=48.25, test_top5_error=9.5, epoch_seconds=12.0, images_per_second=4160.0)


def test_metrics_round_trip_and_best_row(tmp_path):
    rows = [ROW, dict(ROW, epoch=2, step=780, test_error=40.5), dict(ROW, epoch=3, step=1170, test_error=41.0)]
    reporting.write_metrics(str(tmp_path), rows)
    back = reporting.read_metrics(str(tmp_path))
    assert [r["epoch"] for r in back] == [1, 2, 3] and isinstance(back[0]["step"], int)
    assert back[1]["test_error"] == pytest.approx(40.5)
    assert reporting.best_row(back)["epoch"] == 2
    assert reporting.read_metrics(str(tmp_path / "empty")) == []


def test_best_row_ignores_non_finite_errors():
    assert reporting.best_row([dict(ROW, test_error=float("nan")), dict(ROW, epoch=2, test_error=60.0)])["epoch"] == 2
    assert reporting.best_row([dict(ROW, test_error=float("nan"))]) is None


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    reporting.write_summary(str(tmp_path), {"best_test_error": 5.46})
    assert json.loads(path.read_text()) == {"best_test_error": 5.46}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    reporting.write_metrics(str(tmp_path), [ROW])
    before = path.read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        reporting.write_metrics(str(tmp_path), [ROW, dict(ROW, epoch=2)])
    assert path.read_text() == before
