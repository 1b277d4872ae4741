"""Benchmark (not a test): the ResNet paper's Fig. 6 on real CIFAR-10 images, at a budget the machine allows.

  python -m bench.fig6 --budgets=1560 --seeds=0,1,2 --out=bench/results/fig6_1560.json

Trains plain-20, plain-56, ResNet-20, ResNet-56 (the paper's Fig. 6, option A) and pre-activation
ResNet-56 (the Identity Mappings paper's unit) with the trainer, each seed a cell of the results file
(bench/fidelity.py's runner: resumable, saved after every cell), draws their error curves as the paper
does (training error dashed, test error bold, mean over seeds; panels plain / ResNet / original vs
pre-activation) and prints whether the orderings of the papers hold at the end of training:

* plain-56 trains to a higher training error than plain-20 (the degradation problem, Fig. 6 left);
* ResNet-56 to a lower training and test error than ResNet-20 (Fig. 6 middle);
* pre-activation ResNet-56 to a test error no higher than ResNet-56 (Identity Mappings paper).

Every net uses the trainer's config as it is (the ResNet paper's schedule, lr /10 at 50% and 75% of the
budget, momentum without Nesterov); ``python -m keras_preresnet.train.table --table=resnet_table6`` runs
the same configs one seed each.
"""

import argparse
import os
import statistics
import sys

from bench import fidelity

ROWS = ("plain20", "plain56", "resnet20", "resnet56", "resnet56_warmup", "preact_resnet56")
PANELS = (("plain", ("plain20", "plain56")), ("ResNet", ("resnet20", "resnet56", "resnet56_warmup")),
          ("original vs pre-activation", ("resnet56", "preact_resnet56")))
COLOURS = {20: "tab:orange", 56: "tab:red"}
# (row a, relation, row b, metric): the orderings the papers report at the end of training.
ORDERINGS = (
    ("plain56", ">", "plain20", "train_error"),
    ("resnet56", "<", "resnet20", "train_error"),
    ("resnet56", "<", "resnet20", "test_error"),
    ("resnet56_warmup", "<", "resnet20", "train_error"),
    ("resnet56_warmup", "<", "resnet20", "test_error"),
    ("preact_resnet56", "<=", "resnet56", "test_error"),
)


def mean_curve(results, row, budget, seeds, metric):
    """(steps, mean of ``metric`` over the seeds' runs) of ``row``; None without runs."""
    curves = [results["cells"][key]["rows"] for key in (fidelity.cell_key(row, budget, s, "ours") for s in seeds)
              if key in results["cells"]]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    return ([curves[0][i]["step"] for i in range(length)],
            [statistics.fmean(c[i][metric] for c in curves) for i in range(length)])


def orderings(results, budget, seeds):
    """Each ordering with the two final values and whether it holds (None where a row has no runs)."""
    checks = []
    for a, relation, b, metric in ORDERINGS:
        curves = [mean_curve(results, row, budget, seeds, metric) for row in (a, b)]
        if None in curves:
            checks.append(dict(a=a, relation=relation, b=b, metric=metric, holds=None))
            continue
        va, vb = curves[0][1][-1], curves[1][1][-1]
        holds = {">": va > vb, "<": va < vb, "<=": va <= vb}[relation]
        checks.append(dict(a=a, relation=relation, b=b, metric=metric, a_value=va, b_value=vb, holds=holds))
    return checks


def describe(check):
    a, b = fidelity.ROWS[check["a"]]["label"], fidelity.ROWS[check["b"]]["label"]
    what = f"{a} {check['relation']} {b} ({check['metric'].replace('_', ' ')})"
    if check["holds"] is None:
        return f"{what}: not run"
    verdict = "holds" if check["holds"] else "DOES NOT HOLD"
    return f"{what}: {check['a_value']:.2f}% vs {check['b_value']:.2f}%: {verdict}"


def write_figure(path, results, budget, seeds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4.2), sharey=True, squeeze=False)
    for axis, (title, rows) in zip(axes[0], PANELS):
        for row in rows:
            colour = ("tab:blue" if row.startswith("preact") else "tab:purple" if row.endswith("warmup")
                      else COLOURS[fidelity.ROWS[row]["torch"][0]])
            for metric, style, width in (("train_error", "--", 1), ("test_error", "-", 2.5)):
                curve = mean_curve(results, row, budget, seeds, metric)
                if curve:
                    axis.plot(*curve, style, color=colour, linewidth=width,
                              label=fidelity.ROWS[row]["label"] if metric == "test_error" else None)
        axis.set_title(title)
        axis.set_xlabel("iterations")
        if axis.get_lines():
            axis.legend(loc="upper right", fontsize="small")
    axes[0][0].set_ylabel("error (%)  (dashed: training, bold: test)")
    figure.suptitle(f"ResNet paper Fig. 6 on the CIFAR-10 images of this run ({budget} iterations, "
                    f"mean of {len(seeds)} seed(s))", fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fidelity.add_run_arguments(parser, ROWS)
    parser.add_argument("--out", default=os.path.join(fidelity.RESULTS, "fig6.json"), help="results JSON (resumed)")
    options = parser.parse_args(argv)
    if not os.path.isdir(options.data_dir):
        parser.error(f"--data_dir {options.data_dir!r} is not a folder; point it at the CIFAR-10 python batches.")
    # The configs' own recipe and momentum: Fig. 6 is about the trainer as it is.
    options.recipe, options.nesterov, options.torch = fidelity.RECIPE, None, False
    out = os.path.abspath(options.out)
    results = fidelity.load_results(out, fidelity.run_meta(options))
    failed = fidelity.run_cells(options, options.rows, results, out)
    results["orderings"] = {str(budget): orderings(results, budget, options.seeds) for budget in options.budgets}
    fidelity.save_results(out, results)
    lines = []
    for budget in options.budgets:
        lines.append(f"## {budget} iterations, seeds {', '.join(map(str, options.seeds))}")
        lines += [f"* {describe(check)}" for check in results["orderings"][str(budget)]]
        figure = write_figure(os.path.splitext(out)[0] + f"_{budget}.png", results, budget, options.seeds)
        lines.append(f"\n![Fig. 6]({os.path.basename(figure)})\n")
    text = "\n".join(lines)
    print(text)
    with open(os.path.splitext(out)[0] + ".md", "w", encoding="utf-8") as f:
        f.write("# ResNet paper Fig. 6 on real CIFAR-10 images (python -m bench.fig6)\n\n" + text + "\n")
    if failed:
        print(f"fig6: {len(failed)} run(s) failed ({', '.join(failed)}); start the same command again to retry them.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
