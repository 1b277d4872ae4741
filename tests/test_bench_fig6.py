"""bench/fig6.py: the orderings of the papers read from a results file (synthetic curves; the runs
themselves go through bench/fidelity.py's runner, tested in test_bench_fidelity.py)."""

import pytest

from bench import fidelity, fig6


def _results(final_errors):
    """Two-epoch curves per row whose last epoch has ``final_errors[row] = (train, test)``, two seeds."""
    cells = {}
    for row, (train, test) in final_errors.items():
        for seed, jitter in ((0, -0.5), (1, 0.5)):
            rows = [{"epoch": 1, "step": 39, "train_error": 80.0, "test_error": 80.0},
                    {"epoch": 2, "step": 78, "train_error": train + jitter, "test_error": test + jitter}]
            cells[fidelity.cell_key(row, 78, seed, "ours")] = {"rows": rows}
    return {"cells": cells}


def test_orderings_compare_the_seed_means_of_the_last_epoch():
    results = _results({"plain20": (10, 12), "plain56": (14, 15), "resnet20": (9, 11), "resnet56": (6, 9),
                        "resnet56_warmup": (8, 12), "preact_resnet56": (6, 9)})
    checks = fig6.orderings(results, 78, [0, 1])
    # pre-act equal to ResNet-56: <= holds; the warmed-up ResNet-56 trains below ResNet-20, tests above it.
    assert [c["holds"] for c in checks] == [True, True, True, True, False, True]
    assert checks[0]["a_value"] == pytest.approx(14) and checks[0]["b_value"] == pytest.approx(10)
    assert "holds" in fig6.describe(checks[0])


def test_an_ordering_that_fails_or_was_not_run_says_so():
    results = _results({"plain20": (14, 15), "plain56": (10, 12), "resnet56": (6, 9)})
    checks = {(c["a"], c["metric"]): c for c in fig6.orderings(results, 78, [0, 1])}
    assert checks[("plain56", "train_error")]["holds"] is False
    assert "DOES NOT HOLD" in fig6.describe(checks[("plain56", "train_error")])
    assert checks[("resnet56", "train_error")]["holds"] is None  # no ResNet-20 runs
    assert fig6.describe(checks[("resnet56", "train_error")]).endswith("not run")
