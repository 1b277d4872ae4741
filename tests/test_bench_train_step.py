"""bench/train_step.py: the trainer's step and PyTorch's, timed side by side (the harness, not the speed)."""

import pytest

pytest.importorskip("torch")

from bench import train_step  # noqa: E402


def test_prints_each_variant_against_pytorch(capsys):
    train_step.main(["--depth=8", "--batch=8", "--steps=1", "--rounds=1", "--variants=keras"])
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "x |" in line}
    assert set(rows) == {"torch", "keras"}
    assert rows["torch"].rstrip().endswith("| 1.00x |")
    assert float(rows["keras"].split("|")[2]) > 0


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        train_step.main(["--variants=keras,fast"])
