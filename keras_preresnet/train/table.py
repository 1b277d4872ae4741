"""Runs every config of one of the papers' tables and sets the measured errors beside the published ones.

  python -m keras_preresnet.train.table --table=resnet_table6 --data_dir=DATA --output_dir=runs/table6 --epochs=10
  python -m keras_preresnet.train.table --list_tables

Each config trains in OUTPUT_DIR/<config> exactly as `python -m keras_preresnet.train --model_dir=OUTPUT_DIR/<config>`
would, at the budget given here (`--epochs` or `--steps`, `--train_examples`, ...). Start the same command
again to resume a table cut short: finished runs are not redone and an interrupted run continues from
its last checkpoint. The table is written after every run: OUTPUT_DIR/<table>.md (measured training and
test errors beside the published test errors) and OUTPUT_DIR/<table>.png (the runs overlaid as the
ResNet paper's Fig. 6 draws them: training error dashed, test error bold, one colour per series).
"""

import dataclasses
import json
import os
import signal

import keras_preresnet  # noqa: F401 (first: loads TensorFlow without its start-up lines)
import keras
from absl import flags, logging

from keras_preresnet import cli, files, runs
from keras_preresnet.train import configs, data, distribute, evaluate, plotting, reporting, trainer

TABLE_JSON = "table.json"
TEN_CROP_JSON = "ten_crop.json"
# The flags that make up a table's budget: a folder holds one table at one budget.
BUDGET = ("epochs", "steps", "train_examples", "eval_examples", "validation", "batch_size", "depth", "seed")
# The training options (train/options.py) a table passes to every run, part of its budget too.
BUDGET_OPTIONS = ("warmup_iterations",)


def finished(model_dir):
    """The summary (metrics.json) of the run in ``model_dir`` if it ran to the end of its schedule, else None."""
    summary = _read_json(os.path.join(model_dir, reporting.METRICS_JSON))
    run = _read_json(os.path.join(model_dir, runs.RUN_JSON))
    return summary if summary and run and summary.get("steps") == run.get("total_steps") else None


def _check_budget(output_dir, table, settings):
    """Records the table's budget in OUTPUT_DIR/table.json; refuses a folder holding another table or budget."""
    record = {"table": table.name, **{name: getattr(settings, name) for name in BUDGET},
              **{name: (settings.options or {}).get(name) for name in BUDGET_OPTIONS}}
    path = os.path.join(output_dir, TABLE_JSON)
    previous = _read_json(path)
    if previous is not None:
        changed = {k: (previous.get(k), v) for k, v in record.items() if previous.get(k) != v}
        if changed:
            details = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ValueError(
                f"{output_dir!r} holds a table run with other settings ({details}); continue it with the same "
                "flags or use a new --output_dir."
            )
    os.makedirs(output_dir, exist_ok=True)
    files.write_bytes(path, json.dumps(record, indent=2) + "\n")


def _rows(table, only):
    if not only:
        return list(table.rows)
    known = [row.config for row in table.rows]
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ValueError(f"--only names configs that are not rows of {table.name}: {', '.join(unknown)}; "
                         f"its rows are {', '.join(known)}.")
    return [row for row in table.rows if row.config in only]


def _ten_crop(config, model_dir, settings, strategy):
    """Writes the ten-crop test error of the run's final weights (the ImageNet tables' test) once."""
    path = os.path.join(model_dir, TEN_CROP_JSON)
    if not os.path.exists(path):
        result = evaluate.evaluate_weights(
            config, os.path.join(model_dir, trainer.LAST_WEIGHTS), settings.data_dir, crop="ten_crop",
            source=settings.source, depth=settings.depth, limit=settings.eval_examples, strategy=strategy)
        files.write_bytes(path, json.dumps(result, indent=2) + "\n")


def run_table(table, settings, output_dir, only=None, strategy=None):
    """Trains every row of ``table`` (or the configs in ``only``) that has not finished, writing the
    report after each. ``settings`` is a ``trainer.Settings`` whose ``model_dir`` is ignored."""
    rows = _rows(table, only)
    _check_budget(output_dir, table, settings)
    strategy = strategy or distribute.make_strategy("auto")
    for number, row in enumerate(rows, 1):
        config = configs.get_config(row.config)
        model_dir = os.path.join(output_dir, row.config)
        if finished(model_dir):
            print(f"[{number}/{len(rows)}] {row.config}: finished earlier, not redone.", flush=True)
        else:
            print(f"[{number}/{len(rows)}] {row.config}: {config.description}", flush=True)
            keras.backend.clear_session()
            trainer.seed_everything(settings.seed, settings.deterministic)
            trainer.Trainer(config, dataclasses.replace(settings, model_dir=model_dir), strategy).run()
        if config.eval_crop == "ten_crop":
            _ten_crop(config, model_dir, settings, strategy)
        write_report(table, output_dir)
    return collect(table, output_dir)


def collect(table, output_dir):
    """``{config: {"summary", "metrics", "ten_crop"}}`` of the table's finished runs in ``output_dir``."""
    results = {}
    for row in table.rows:
        model_dir = os.path.join(output_dir, row.config)
        summary = finished(model_dir)
        if summary is None:
            continue
        results[row.config] = {
            "summary": summary,
            "metrics": reporting.read_metrics(model_dir),
            "ten_crop": _read_json(os.path.join(model_dir, TEN_CROP_JSON)),
        }
    return results


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _budget_line(results):
    summaries = [r["summary"] for r in results.values()]
    if not summaries:
        return "No run has finished yet."
    steps = sorted({s["steps"] for s in summaries})
    epochs = sorted({s["epochs"] for s in summaries})
    train = sorted({s["train_examples"] for s in summaries})
    test = sorted({s["test_examples"] for s in summaries})
    batch = sorted({s["global_batch"] for s in summaries})

    def one(values):
        return ", ".join(f"{v:,}" for v in values)

    return (f"Measured: {one(steps)} iterations ({one(epochs)} epochs) at batch {one(batch)} on {one(train)} "
            f"training images, tested on {one(test)} images.")


def _error(value):
    return "-" if value is None else f"{value:.2f}"


def markdown(table, results, budget=None):
    """The table as markdown: the measured final training and test errors beside the published test error.
    ``budget`` is the table's table.json (the flags it ran with)."""
    flags_used = " ".join(f"--{k}" if v is True else f"--{k}={v}" for k, v in (budget or {}).items()
                          if k != "table" and v is not None and v is not False)
    lines = [
        f"## {table.title}",
        "",
        f"`python -m keras_preresnet.train.table --table={table.name} {flags_used}`".replace(" `", "`"),
        "",
        _budget_line(results),
        "Training error: the mean over the last epoch's mini-batches (augmented, in training mode), as the "
        "papers' curves; test error: the final weights' (ten crops where the paper reports ten-crop errors).",
        "",
        "| network | config | training error (%) | test error (%) | published test error (%) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in table.rows:
        result = results.get(row.config)
        if result is None:
            train, test = "not run", "not run"
        else:
            train = _error(result["metrics"][-1]["train_error"] if result["metrics"] else None)
            test = _error(result["summary"]["final_test_error"])
            if result["ten_crop"] is not None:
                test = f"{_error(result['ten_crop']['top1_error'])} (10-crop)"
        lines.append(f"| {row.panel}: {row.label} | `{row.config}` | {train} | {test} | {table.published(row)} |")
    return "\n".join(lines) + "\n"


def write_report(table, output_dir):
    """Writes OUTPUT_DIR/<table>.md and, if matplotlib is installed, OUTPUT_DIR/<table>.png."""
    results = collect(table, output_dir)
    budget = _read_json(os.path.join(output_dir, TABLE_JSON))
    files.write_bytes(os.path.join(output_dir, f"{table.name}.md"), markdown(table, results, budget))
    try:
        plotting.plot_table(table, {name: r["metrics"] for name, r in results.items()},
                            os.path.join(output_dir, f"{table.name}.png"))
    except ImportError:
        print("matplotlib is not installed: no figure (pip install keras_preresnet[train]).")
    return results


# ---------------------------------------------------------------------------------- command line

FLAGS = flags.FLAGS


def _define_flags():
    """The command line's flags, defined only when it runs (absl keeps one set of flags per process)."""
    flags.DEFINE_string("table", None, "The paper's table to run (see --list_tables).")
    flags.DEFINE_bool("list_tables", False, "Print the tables and their configs and exit.")
    flags.DEFINE_string("data_dir", None, "Folder of the data (as for python -m keras_preresnet.train).")
    flags.DEFINE_string("output_dir", None, "Folder of the table: one sub-folder per config, the .md and the .png.")
    flags.DEFINE_enum("data_source", "auto", data.SOURCES, "Kind of --data_dir; 'auto' detects it.")
    flags.DEFINE_list("only", None, "Run only these configs of the table (the report lists every row).")
    flags.DEFINE_integer("epochs", None, "Train each config this many epochs.", lower_bound=1)
    flags.DEFINE_integer("steps", None, "Train each config this many steps.", lower_bound=1)
    flags.DEFINE_integer("train_examples", None, "Use only the first N training images.", lower_bound=1)
    flags.DEFINE_integer("eval_examples", None, "Use only the first N test images.", lower_bound=1)
    flags.DEFINE_bool("validation", False, "Test on the paper's held-out validation images instead of the test set.")
    flags.DEFINE_integer("batch_size", None, "Global batch size (default: each config's).", lower_bound=1)
    flags.DEFINE_integer("depth", None, "Override every config's depth (smoke tests).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the data order and the initialisation.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_float("warmup_iterations", None, "Give every run the step recipes' warm-up (0.01 at batch 128) for "
                       "this many iterations at batch 128, whatever the budget (python -m keras_preresnet.train "
                       "--helpfull); 0: none.")
    flags.mark_flags_as_mutual_exclusive(["epochs", "steps"])


def tables_listing():
    lines = []
    for table in configs.TABLES.values():
        lines.append(f"  {table.name}: {table.title}")
        lines.extend(f"      {row.config}  [paper: {table.published(row)}]" for row in table.rows)
    return "Tables:\n" + "\n".join(lines) + "\n"


def main(argv):
    cli.check_arguments(argv, FLAGS, () if FLAGS.list_tables else ("table", "data_dir", "output_dir"))
    if FLAGS.list_tables:
        print(tables_listing())
        return 0
    logging.set_verbosity(logging.WARNING)
    files.name_output_option("--output_dir")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = trainer.Settings(
        model_dir=None, data_dir=FLAGS.data_dir, source=FLAGS.data_source, epochs=FLAGS.epochs, steps=FLAGS.steps,
        batch_size=FLAGS.batch_size, train_examples=FLAGS.train_examples, eval_examples=FLAGS.eval_examples,
        validation=FLAGS.validation,
        depth=FLAGS.depth, seed=FLAGS.seed, progress=FLAGS.progress,
        options={name: getattr(FLAGS, name) for name in BUDGET_OPTIONS},
    )
    table = configs.get_table(FLAGS.table)
    run_table(table, settings, FLAGS.output_dir, only=FLAGS.only)
    print(f"wrote {os.path.join(FLAGS.output_dir, table.name)}.md and .png")
    return cli.EXIT_OK


def run():
    _define_flags()
    cli.run("train.table", main, failures=(trainer.TrainingError,),
            interrupted="start the same command again to resume the table.")


if __name__ == "__main__":
    run()
