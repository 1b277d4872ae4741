"""bench/initial_state.py: the initial state of the trainer's networks against the reference's, over seeds."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from bench import initial_state  # noqa: E402


@pytest.fixture(scope="module")
def states(cifar_dir):
    return {row: initial_state.measure_row(row, range(2), data_dir=str(cifar_dir), images=128, log=lambda *_: None)
            for row in ("resnet20", "preact_resnet20")}


def test_both_implementations_see_the_same_pooled_features(states):
    # In training mode every convolution is followed by a BatchNorm, so the pooled features depend on the
    # unit, not on the draw: measured 1.26 / 1.25 (original) and 0.37 / 0.36 (pre-activation).
    for row, low, high in (("resnet20", 1.0, 1.5), ("preact_resnet20", 0.25, 0.5)):
        for implementation in ("ours", "torch"):
            for state in states[row][implementation]:
                assert low < state["feature_mean"] < high, (row, implementation, state)


def test_the_original_unit_starts_with_larger_features_and_classifier_steps(states):
    # The original unit adds every residual branch onto a stream that no BatchNorm rescales: its pooled
    # features and hence the classifier's first gradient are several times the pre-activation net's.
    for implementation in ("ours", "torch"):
        original, preact = states["resnet20"][implementation], states["preact_resnet20"][implementation]
        for name, factor in (("feature_mean", 2.5), ("classifier_gradient_norm", 2.0)):
            assert min(s[name] for s in original) > factor * max(s[name] for s in preact), (implementation, name)
        for state in original + preact:
            assert 1.5 < state["initial_loss"] < 4.0 and 0.1 <= state["largest_mean_probability"] <= 1.0


def test_summary_and_files(states, tmp_path):
    summaries = [initial_state.summarise(row, rows) for row, rows in states.items()]
    assert summaries[0]["seeds"] == 2 and set(summaries[0]) >= set(initial_state.MEASURES)
    entry = summaries[0]["feature_mean"]
    assert abs(entry["ours"][0] - entry["torch"][0]) < 0.2 and math.isfinite(entry["welch_t"])
    out = tmp_path / "state.json"
    markdown = initial_state.write(str(out), {"images": 128, "data_dir": "d", "written": "now"}, summaries, states)
    assert json.loads(out.read_text())["summaries"][1]["label"] == "pre-act ResNet-20"
    assert "| ResNet-20 | 2 |" in open(markdown).read()


def test_welch_t():
    assert initial_state.welch_t([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.0
    # means 2 and 5, variances 1 and 1, three each: t = -3 / sqrt(2/3)
    assert initial_state.welch_t([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(-3 / math.sqrt(2 / 3))
    assert initial_state.welch_t([1.0, 1.0], [2.0, 2.0]) == -math.inf


@pytest.mark.parametrize("argv, message", [(["--rows=resnet21"], "unknown"), (["--seeds=1"], "at least 2"),
                                           (["--images=64"], "at least 128")])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        initial_state.main(argv)
    assert message in capsys.readouterr().err
