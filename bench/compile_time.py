"""Compile time and memory of deep nets, unrolled against looped stages, on the CPU.

    python -m bench.compile_time                      # the whole PLAN (tens of minutes)
    python -m bench.compile_time --models=preact_resnet164 --backends=jax --forms=unrolled,looped

Each (model, backend, form) runs in a child process with a wall-clock limit and a resident-memory
limit (the parent kills it past either, and records how far it got): an unrolled PreActResNet1001 takes
minutes and tens of GB to compile, and must not take the machine down with it. A child builds the
model, compiles ``model.compile(SGD)`` and times the first ``train_on_batch`` (trace + compile) and
the median of the next steps; on JAX it first compiles a stateless training step ahead of time and
reads its temporary buffer size from XLA's ``memory_analysis()`` (activation memory). The parent prints a
table with the unrolled/looped ratios and writes ``bench/results/compile_time-<date>.json``.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

# Model: architecture, input size (ImageNet ResNet-200 at 64x64 keeps its CPU steps short; compile
# time does not depend on the input size) and classes.
MODELS = {
    "preact_resnet164": dict(image_size=32, classes=10),
    "preact_resnet1001": dict(image_size=32, classes=10),
    "preact_resnet200": dict(image_size=64, classes=1000),
}
# Form: build_resnet(scan_units=..., remat=...).
FORMS = {
    "unrolled": dict(scan_units=False, remat=False),
    "looped": dict(scan_units=True, remat=False),
    "looped_remat": dict(scan_units=True, remat=True),
}
BACKENDS = ("tensorflow", "jax")
BATCH = 8
# The measurements the targets need, the headline first: (model, backend, forms). Remat is
# measured on JAX, where XLA reports the step's temporary buffers, and on TensorFlow by peak resident
# memory; ResNet-200's target is on JAX.
PLAN = [
    ("preact_resnet1001", "tensorflow", ("looped", "looped_remat", "unrolled")),
    ("preact_resnet1001", "jax", ("looped", "looped_remat", "unrolled")),
    ("preact_resnet200", "jax", ("looped", "unrolled")),
    ("preact_resnet164", "tensorflow", ("looped", "looped_remat", "unrolled")),
    ("preact_resnet164", "jax", ("looped", "looped_remat", "unrolled")),
    ("preact_resnet200", "tensorflow", ("looped", "unrolled")),
]


# -- child --------------------------------------------------------------------------------------------


def _peak_rss():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_s():
    """CPU seconds of this process (all threads): less disturbed than wall time on a shared machine."""
    times = os.times()
    return times.user + times.system


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu_s()
    fn()
    return time.perf_counter() - wall, _cpu_s() - cpu


def _jax_temp_bytes(model, x, y):
    """Temporary buffers of one compiled training step (activations kept for the backward pass)."""
    import jax
    import keras

    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def step(trainable, non_trainable, opt_vars, x, y):
        def loss(trainable, non_trainable):
            pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(y, pred), non_trainable

        (value, non_trainable), grads = jax.value_and_grad(loss, has_aux=True)(trainable, non_trainable)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return trainable, non_trainable, opt_vars, value

    args = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables], x, y)
    start = time.perf_counter()
    compiled = jax.jit(step).lower(*args).compile()
    seconds = time.perf_counter() - start
    return int(compiled.memory_analysis().temp_size_in_bytes), seconds


def child(spec, result_path):
    out = dict(spec)

    def save():
        out["peak_rss_bytes"] = _peak_rss()
        with open(result_path, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)

    start = time.perf_counter()
    import keras

    from keras_preresnet import models

    out["import_s"] = time.perf_counter() - start
    size, classes = spec["image_size"], spec["classes"]
    start = time.perf_counter()
    model = models.build_named(spec["model"], input_shape=(size, size, 3), classes=classes,
                               classifier_activation=None, **FORMS[spec["form"]])
    out["build_s"] = time.perf_counter() - start
    out["params"] = int(model.count_params())
    save()
    rng = np.random.RandomState(0)
    x = rng.rand(BATCH, size, size, 3).astype("float32")
    y = rng.randint(0, classes, BATCH)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    out["first_step_s"], out["first_step_cpu_s"] = _timed(lambda: model.train_on_batch(x, y))
    out["rss_after_first_step_bytes"] = _peak_rss()
    save()
    if spec["backend"] == "jax":
        out["xla_temp_bytes"], out["aot_compile_s"] = _jax_temp_bytes(model, x, y)
        save()
    steps = [_timed(lambda: model.train_on_batch(x, y)) for _ in range(spec["steps"])]
    out["step_times_s"] = [wall for wall, _ in steps]
    out["step_s"] = float(np.median(out["step_times_s"]))
    out["step_cpu_s"] = float(np.median([cpu for _, cpu in steps]))
    out["status"] = "ok"
    save()


# -- parent -------------------------------------------------------------------------------------------


def _rss_of_tree(pid):
    """Resident bytes of ``pid`` and its descendants (from /proc)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_child(spec, timeout_s, memory_limit_bytes):
    """Runs one measurement; returns its result with ``status`` ok, timeout, memory_limit or error."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        env = dict(os.environ, KERAS_BACKEND=spec["backend"], TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, "-m", "bench.compile_time", "--child", json.dumps(spec), "--result", result_path]
        process = subprocess.Popen(command, cwd=os.path.dirname(HERE), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        start, peak, status = time.monotonic(), 0, None
        while process.poll() is None:
            peak = max(peak, _rss_of_tree(process.pid))
            elapsed = time.monotonic() - start
            if elapsed > timeout_s:
                status = "timeout"
            elif peak > memory_limit_bytes:
                status = "memory_limit"
            if status:
                os.killpg(process.pid, 9)
                process.wait()
                break
            time.sleep(0.5)
        stderr = process.stderr.read().decode(errors="replace")
        out = dict(spec)
        if os.path.exists(result_path):
            with open(result_path, encoding="utf-8") as f:
                out = json.load(f)
        out["wall_s"] = time.monotonic() - start
        out["parent_peak_rss_bytes"] = peak
        if status:
            out["status"] = status
            out["limit"] = f"{timeout_s} s" if status == "timeout" else f"{memory_limit_bytes / 2**30:.1f} GiB"
        elif out.get("status") != "ok":
            out["status"] = "error"
            out["error"] = stderr[-2000:]
        return out


def _fmt(value, unit="s"):
    if value is None:
        return "-"
    if unit == "GB":
        return f"{value / 1e9:.2f}"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _cell(row, key, unit="s"):
    if row.get(key) is not None:
        return _fmt(row[key], unit)
    if row["status"] in ("timeout", "memory_limit"):
        return f"> {row['limit']}" if key == "first_step_s" else "-"
    return "-"


def table(rows):
    lines = ["| model | backend | form | build s | first step s (CPU s) | step s (CPU s) | peak RSS GB "
             "| XLA temp GB | status |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        rss = max(r.get("peak_rss_bytes") or 0, r.get("parent_peak_rss_bytes") or 0)
        first = _cell(r, "first_step_s") + (f" ({_fmt(r['first_step_cpu_s'])})" if r.get("first_step_cpu_s") else "")
        step = _cell(r, "step_s") + (f" ({_fmt(r['step_cpu_s'])})" if r.get("step_cpu_s") else "")
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['form']} | {_cell(r, 'build_s')} | {first} | {step} "
            f"| {_fmt(rss, 'GB')} | {_cell(r, 'xla_temp_bytes', 'GB')} | {r['status']} |"
        )
    return "\n".join(lines)


def ratios(rows):
    """unrolled / looped first-step and looped / unrolled step time, per model and backend."""
    by = {(r["model"], r["backend"], r["form"]): r for r in rows}
    out = []
    for (model, backend, form), r in by.items():
        if form != "looped":
            continue
        u = by.get((model, backend, "unrolled"))
        remat = by.get((model, backend, "looped_remat"))
        entry = dict(model=model, backend=backend)
        if u and u.get("first_step_s") and r.get("first_step_s"):
            entry["first_step_unrolled_over_looped"] = u["first_step_s"] / r["first_step_s"]
        elif u and u["status"] in ("timeout", "memory_limit") and r.get("first_step_s"):
            entry["first_step_unrolled_over_looped"] = f"unrolled did not finish ({u['status']}, {u['limit']})"
        if u and u.get("first_step_cpu_s") and r.get("first_step_cpu_s"):
            entry["first_step_cpu_unrolled_over_looped"] = u["first_step_cpu_s"] / r["first_step_cpu_s"]
        if u and u.get("step_s") and r.get("step_s"):
            entry["step_looped_over_unrolled"] = r["step_s"] / u["step_s"]
            entry["step_cpu_looped_over_unrolled"] = r["step_cpu_s"] / u["step_cpu_s"]
        if remat and remat.get("xla_temp_bytes") and r.get("xla_temp_bytes"):
            entry["xla_temp_remat_over_looped"] = remat["xla_temp_bytes"] / r["xla_temp_bytes"]
        if remat and remat.get("step_s") and r.get("step_s"):
            entry["step_remat_over_looped"] = remat["step_s"] / r["step_s"]
        out.append(entry)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    parser.add_argument("--timeout_s", type=int, default=300, help="wall-clock limit of one child")
    parser.add_argument("--memory_limit_gb", type=float, default=6.0, help="resident-memory limit of one child")
    parser.add_argument("--output", default=None, help="result file (default bench/results/compile_time-<date>.json)")
    parser.add_argument("--note", default="shared 2-core CPU machine (other jobs running)")
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child), args.result)

    def choose(value, allowed, what):
        chosen = [v for v in value.split(",") if v]
        unknown = [v for v in chosen if v not in allowed]
        if unknown:
            parser.error(f"--{what}: unknown {unknown}; choose from {list(allowed)}")
        return chosen

    models = choose(args.models, MODELS, "models")
    backends = choose(args.backends, BACKENDS, "backends")
    forms = choose(args.forms, FORMS, "forms")
    output = args.output or os.path.join(RESULTS, f"compile_time-{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    rows = []
    for model, backend, planned in PLAN:
        for form in planned:
            if model not in models or backend not in backends or form not in forms:
                continue
            spec = dict(model=model, backend=backend, form=form, steps=args.steps, batch=BATCH, **MODELS[model])
            print(f"{model} {backend} {form} ...", flush=True)
            row = run_child(spec, args.timeout_s, args.memory_limit_gb * 2**30)
            rows.append(row)
            print(f"  {row['status']}: build {_cell(row, 'build_s')}, first step {_cell(row, 'first_step_s')}, "
                  f"step {_cell(row, 'step_s')} s, XLA temp {_cell(row, 'xla_temp_bytes', 'GB')} GB", flush=True)
            # Written after every row: a run stopped halfway keeps what it measured.
            _write(output, args, rows)
    print(table(rows))
    for entry in ratios(rows):
        print(entry)
    print(f"wrote {output}")


def _write(output, args, rows):
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dict(note=args.note, batch=BATCH, timeout_s=args.timeout_s, memory_limit_gb=args.memory_limit_gb,
                       rows=rows, ratios=ratios(rows)), f, indent=1)
    os.replace(tmp, output)

if __name__ == "__main__":
    sys.exit(main())
