"""`python -m keras_preresnet.train.table`: a paper's table run config by config, resumed, reported like the paper."""

import json
import os
import subprocess
import sys

import pytest
from matplotlib.colors import to_hex

from keras_preresnet.train import configs, plotting, table, trainer
from support import REPO



def _metrics(train, test):
    return [dict(epoch=e + 1, step=10 * (e + 1), train_error=tr, test_error=te)
            for e, (tr, te) in enumerate(zip(train, test))]


def _result(train, test, ten_crop=None):
    metrics = _metrics(train, test)
    summary = dict(steps=metrics[-1]["step"], epochs=len(metrics), final_test_error=test[-1], train_examples=500,
                   test_examples=100, global_batch=32)
    return {"summary": summary, "metrics": metrics, "ten_crop": ten_crop}


def test_every_row_of_every_table_is_a_config():
    for name, paper_table in configs.TABLES.items():
        assert paper_table.rows, name
        for row in paper_table.rows:
            assert row.config in configs.CONFIGS, (name, row.config)
    assert "identity_table2" in configs.tables_of("cifar10_resnet110")


def test_markdown_sets_measured_errors_beside_the_published_ones():
    paper_table = configs.TABLES["identity_table2"]
    results = {"cifar10_resnet110": _result([80.0, 61.25], [75.0, 58.5]),
               "cifar10_preact_resnet164": _result([70.0], [66.0])}
    text = table.markdown(paper_table, results, {"table": "identity_table2", "epochs": 2, "steps": None,
                                                 "validation": True, "depth": None})
    lines = text.splitlines()
    assert "`python -m keras_preresnet.train.table --table=identity_table2 --epochs=2 --validation`" in lines
    assert "| ResNet-110: original (Fig. 4a) | `cifar10_resnet110` | 61.25 | 58.50 | 6.61 |" in lines
    assert "| ResNet-164: full pre-activation (Fig. 4e) | `cifar10_preact_resnet164` | 70.00 | 66.00 | 5.46 |" in lines
    assert "| ResNet-110: BN after addition (Fig. 4b) | `cifar10_resnet110_bn_after_addition` | not run | not run | 8.17 |" \
        in lines
    assert sum(line.startswith("| ResNet-") for line in lines) == len(paper_table.rows)
    assert "Measured: 10, 20 iterations (1, 2 epochs) at batch 32 on 500 training images" in text


def test_ten_crop_errors_are_reported_as_such():
    paper_table = configs.TABLES["identity_table2"]
    results = {"cifar10_resnet110": _result([50.0], [40.0], ten_crop={"top1_error": 37.125})}
    assert "| 50.00 | 37.12 (10-crop) | 6.61 |" in table.markdown(paper_table, results)


def test_figure_draws_panels_side_by_side_training_dashed_test_bold_one_colour_per_series():
    paper_table = configs.TABLES["identity_table2"]
    results = {"cifar10_resnet110": _metrics([80, 60], [75, 58]), "cifar10_resnet164": _metrics([70, 50], [72, 55]),
               "cifar10_preact_resnet110": _metrics([78, 59], [74, 57])}
    figure = plotting.draw_table(paper_table, results)
    left, right = figure.axes
    assert (left.get_title(), right.get_title()) == ("ResNet-110", "ResNet-164")
    assert left.get_shared_y_axes().joined(left, right)
    train, test, preact_train, preact_test = left.get_lines()
    assert train.get_linestyle() == "--" and test.get_linestyle() == "-"
    assert test.get_linewidth() > train.get_linewidth()
    assert list(train.get_ydata()) == [80, 60] and list(test.get_ydata()) == [75, 58]
    assert list(test.get_xdata()) == [10, 20]
    assert to_hex(train.get_color()) == to_hex(test.get_color()) != to_hex(preact_test.get_color())
    # The same series (the original unit) has the same colour in both panels.
    assert to_hex(right.get_lines()[1].get_color()) == to_hex(test.get_color())
    assert [t.get_text() for t in left.get_legend().get_texts()] == [
        "original (Fig. 4a)", "full pre-activation (Fig. 4e)"]


def _write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_a_run_is_finished_only_at_the_end_of_its_schedule(tmp_path):
    assert table.finished(tmp_path) is None
    _write(tmp_path / "run.json", {"total_steps": 20})
    _write(tmp_path / "metrics.json", {"steps": 10})
    assert table.finished(tmp_path) is None
    _write(tmp_path / "metrics.json", {"steps": 20})
    assert table.finished(tmp_path) == {"steps": 20}


def _settings(tmp_path, **kwargs):
    return trainer.Settings(model_dir=None, data_dir=str(tmp_path), **kwargs)


def test_only_must_name_rows_of_the_table(tmp_path):
    with pytest.raises(ValueError, match="--only names configs that are not rows of identity_table1: cifar10_resnet20"):
        table.run_table(configs.TABLES["identity_table1"], _settings(tmp_path), str(tmp_path / "out"),
                        only=["cifar10_resnet20"])
    assert not (tmp_path / "out").exists()


def test_a_folder_holds_one_table_at_one_budget(tmp_path):
    _write(tmp_path / "table.json", {"table": "identity_table1", "epochs": 2, "steps": None, "train_examples": None,
                                     "eval_examples": None, "validation": False, "batch_size": None, "depth": None,
                                     "seed": 0})
    with pytest.raises(ValueError, match=r"holds a table run with other settings \(epochs 2 -> 3\)"):
        table.run_table(configs.TABLES["identity_table1"], _settings(tmp_path, epochs=3), str(tmp_path))
    # An absolute warm-up changes every run: a folder holds one.
    with pytest.raises(ValueError, match=r"other settings \(warmup_iterations None -> 400\)"):
        table.run_table(configs.TABLES["identity_table1"], _settings(tmp_path, epochs=2, options={"warmup_iterations": 400}),
                        str(tmp_path))


def _table(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "keras_preresnet.train.table", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_a_table_cut_short_resumes_without_redoing_finished_runs(tmp_path, cifar_dir):
    output = tmp_path / "table"
    budget = ["--table=identity_table1", "--depth=8", "--steps=2", "--batch_size=16", "--train_examples=64",
              "--eval_examples=32", f"--data_dir={cifar_dir}", f"--output_dir={output}", "--noprogress"]
    first = _table(*budget, "--only=cifar10_resnet110")
    assert first.returncode == 0, first.stderr[-3000:]
    first_summary = (output / "cifar10_resnet110" / "metrics.json").stat().st_mtime_ns
    assert "| `cifar10_resnet110_conv1x1` | not run | not run | 12.22 |" in (output / "identity_table1.md").read_text()

    second = _table(*budget, "--only=cifar10_resnet110,cifar10_resnet110_conv1x1")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[1/2] cifar10_resnet110: finished earlier, not redone." in second.stdout
    assert (output / "cifar10_resnet110" / "metrics.json").stat().st_mtime_ns == first_summary
    report = (output / "identity_table1.md").read_text()
    assert "--depth=8" in report and "not run | not run | 12.22" not in report
    assert (output / "identity_table1.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in output.iterdir()) == [
        "cifar10_resnet110", "cifar10_resnet110_conv1x1", "identity_table1.md", "identity_table1.png", "table.json"]

    other = _table(*budget[:2], "--steps=3", *budget[3:])
    assert other.returncode == 1 and "other settings (steps 2 -> 3)" in other.stderr and "Traceback" not in other.stderr
