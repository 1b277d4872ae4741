"""Images/s, compile time and peak memory of keras_preresnet against its peers, in one run.

    python -m bench.gpu_throughput --device=gpu                 # every workload, every implementation
    python -m bench.gpu_throughput --device=cpu --quick         # CPU smoke run at a tiny size

Each (workload, implementation) is measured in its own child process (bench/measure_jax.py,
bench/measure_torch.py); the ratios keras_preresnet / peer and the issue's targets are worked out
here. The JSON result is rewritten after every child, so a run cut off at its time limit keeps what
it measured. See bench/README.md.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from bench import workloads as wl

FLAGS = flags.FLAGS
flags.DEFINE_list("workloads", list(wl.WORKLOADS), f"Workloads to run, of {list(wl.WORKLOADS)}.")
flags.DEFINE_list("implementations", list(wl.IMPLEMENTATIONS), "Implementations to measure.")
flags.DEFINE_integer("batch_size", None, "Overrides every workload's batch size.")
flags.DEFINE_integer("image_size", None, "Overrides every workload's input size.")
flags.DEFINE_integer("steps", 10, "Timed steps per measurement, after the warm-up.")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compiling (the first torch step compiles).")
flags.DEFINE_enum("device", "gpu", ["gpu", "cpu"], "Where to measure.")
flags.DEFINE_bool("quick", False, "CPU smoke run: batch 2, 32x32 inputs, 2 units per stage, 1 warm-up "
                  "and 1 timed step.")
flags.DEFINE_bool("skip_peers", False, "Measure keras_preresnet only.")
flags.DEFINE_bool("fold_batchnorm", True, "Inference workloads use keras_preresnet.fold_batchnorm.")
flags.DEFINE_string("output", None, "Result JSON; default bench/results/<date>-<device>[-smoke].json.")
flags.DEFINE_integer("child_timeout", 420, "Seconds one implementation may take (build, compile, run).")
flags.DEFINE_integer("budget_s", 0, "Stop starting children once this many seconds have passed (0: none); "
                     "what is left is reported as skipped. Keeps a run inside a 600 s device call.")
flags.DEFINE_integer("recursion_limit", 10000, "Python recursion limit in every child (deep Keras graphs).")

CHILD_MODULES = {"keras_preresnet": "bench.measure_jax", "keras_apps": "bench.measure_jax",
                 "torch_eager": "bench.measure_torch", "torch_compile": "bench.measure_torch"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _settings():
    quick = wl.QUICK if FLAGS.quick else {}
    return dict(
        units={key: quick[key] for key in ("cifar_units", "imagenet_blocks") if key in quick},
        steps=quick.get("steps", FLAGS.steps),
        warmup=quick.get("warmup", FLAGS.warmup),
        batch_size=FLAGS.batch_size or quick.get("batch_size"),
        image_size=FLAGS.image_size or quick.get("image_size"),
    )


def _child_env(implementation, scratch):
    env = dict(os.environ)
    # A fresh compile cache per child: torch.compile's on-disk caches would otherwise turn a second
    # compile of the same graph (e.g. a rerun on a warm machine) into a cache hit.
    env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(scratch, "inductor")
    env["TRITON_CACHE_DIR"] = os.path.join(scratch, "triton")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    if CHILD_MODULES[implementation] == "bench.measure_jax":
        env["KERAS_BACKEND"] = "jax"
        if FLAGS.device == "cpu":
            env["JAX_PLATFORMS"] = "cpu"
    return env


def _run_child(implementation, spec, timeout):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        command = [sys.executable, "-m", CHILD_MODULES[implementation], "--spec", json.dumps(spec),
                   "--result", path]
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=REPO, env=_child_env(implementation, tmp), timeout=timeout,
                                  capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return dict(status="timeout", reason=f"did not finish within {timeout:.0f} s",
                        wall_s=time.perf_counter() - start)
        wall_s = time.perf_counter() - start
        if not os.path.exists(path):
            tail = (proc.stderr or proc.stdout)[-1500:]
            return dict(status="error", reason=f"child exited with {proc.returncode} and no result",
                        stderr_tail=tail, wall_s=wall_s)
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
    out["wall_s"] = wall_s
    return out


def _ratios(results):
    subject = results.get(wl.SUBJECT, {})
    if subject.get("status") != "ok":
        return {}
    return {name: subject["images_per_s"] / r["images_per_s"]
            for name, r in results.items() if name != wl.SUBJECT and r.get("status") == "ok"}


def _check_target(target, results, ratios, smoke):
    """Whether keras_preresnet met the issue's target in this run, and why not where it did not."""
    if smoke:
        return dict(evaluated=False, reason="CPU smoke run: targets are for the GPU machine")
    subject = results.get(wl.SUBJECT, {})
    if subject.get("status") != "ok":
        return dict(evaluated=False, reason=f"{wl.SUBJECT} did not run: {subject.get('status')}")
    if target["versus"] == "best_peer":
        if not ratios:
            return dict(evaluated=False, reason="no peer ran")
        versus = min(ratios, key=ratios.get)
    else:
        versus = target["versus"]
        if versus not in ratios:
            return dict(evaluated=False, reason=f"{versus} did not run")
    checks = {f"ratio_vs_{versus}>={target['min_ratio']}": ratios[versus] >= target["min_ratio"]}
    if "max_compile_s" in target:
        checks[f"compile_s<={target['max_compile_s']}"] = subject["compile_s"] <= target["max_compile_s"]
    if "memory_at_most" in target:
        peer = results.get(target["memory_at_most"], {})
        mine, theirs = subject.get("peak_device_bytes"), peer.get("peak_device_bytes")
        checks[f"peak_memory<={target['memory_at_most']}"] = (
            None if mine is None or theirs is None else mine <= theirs)
    met = all(checks.values()) if None not in checks.values() else None
    return dict(evaluated=True, met=met, checks=checks)


def _default_output(smoke):
    date = datetime.date.today().isoformat()
    suffix = f"{FLAGS.device}-smoke" if smoke else FLAGS.device
    return os.path.join(REPO, "bench", "results", f"{date}-{suffix}.json")


def _write(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _print_row(workload, name, r, ratio):
    if r["status"] != "ok":
        print(f"  {workload:13s} {name:16s} {r['status']}: {r.get('reason', '')[:150]}", flush=True)
        return
    mem = r.get("peak_device_bytes")
    print(f"  {workload:13s} {name:16s} {r['images_per_s']:10.1f} img/s  step {r['step_ms']:9.1f} ms  "
          f"compile {_fmt(r.get('compile_s'), '7.1f')} s  peak {_fmt(mem and mem / 2**30, '6.2f')} GiB  "
          f"rss {r['peak_rss_bytes'] / 2**30:5.2f} GiB  keras_preresnet/this {_fmt(ratio, '5.2f')}",
          flush=True)


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.workloads) - set(wl.WORKLOADS))
    if unknown:
        raise app.UsageError(f"Unknown workloads {unknown}; known: {sorted(wl.WORKLOADS)}.")
    unknown = sorted(set(FLAGS.implementations) - set(wl.IMPLEMENTATIONS))
    if unknown:
        raise app.UsageError(f"Unknown implementations {unknown}; known: {list(wl.IMPLEMENTATIONS)}.")
    smoke = FLAGS.quick or FLAGS.device == "cpu"
    settings = _settings()
    output = FLAGS.output or _default_output(smoke)
    implementations = [i for i in wl.IMPLEMENTATIONS if i in FLAGS.implementations
                       and not (FLAGS.skip_peers and i != wl.SUBJECT)]
    report = dict(
        kind="cpu-smoke" if smoke else "gpu",
        note=("CPU smoke run at a tiny size: proves the scripts run end to end; its figures say nothing "
              "about GPU speed." if smoke else "GPU measurement; peers measured in the same run."),
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        device=FLAGS.device,
        host=dict(python=platform.python_version(), machine=platform.machine(), cpus=os.cpu_count()),
        command=" ".join(sys.argv),
        settings=dict(settings, fold_batchnorm=FLAGS.fold_batchnorm, child_timeout=FLAGS.child_timeout,
                      precision="bf16 (Keras mixed_bfloat16 / torch autocast)", optimizer="SGD momentum 0.9"),
        peers=wl.PEER_DESCRIPTIONS,
        workloads={},
    )
    start = time.perf_counter()
    print(f"Writing {output}", flush=True)
    for name in FLAGS.workloads:
        workload = dict(wl.WORKLOADS[name], **settings["units"], name=name)
        batch = settings["batch_size"] or workload["batch_size"]
        size = settings["image_size"] or workload["image_size"]
        entry = dict(mode=workload["mode"], architecture=workload["architecture"],
                     units_per_stage=wl.blocks(workload), batch_size=batch,
                     image_size=size, target=wl.describe_target(workload["target"]),
                     issue_peer_figures=workload["issue_peers"], results={})
        report["workloads"][name] = entry
        for implementation in implementations:
            left = FLAGS.budget_s - (time.perf_counter() - start) if FLAGS.budget_s else None
            if left is not None and left < 30:
                result = dict(status="skipped", reason=f"--budget_s={FLAGS.budget_s} spent")
            else:
                spec = dict(workload=workload, implementation=implementation,
                            device=FLAGS.device, batch_size=batch, image_size=size, steps=settings["steps"],
                            warmup=settings["warmup"], fold_batchnorm=FLAGS.fold_batchnorm,
                            recursion_limit=FLAGS.recursion_limit)
                timeout = FLAGS.child_timeout if left is None else min(FLAGS.child_timeout, left - 10)
                result = _run_child(implementation, spec, timeout)
            entry["results"][implementation] = result
            entry["ratios"] = _ratios(entry["results"])
            entry["target_check"] = _check_target(
                workload["target"], entry["results"], entry["ratios"], smoke)
            _write(output, report)
            _print_row(name, implementation, result, entry["ratios"].get(implementation))
    print(f"\nkeras_preresnet / peer images/s ({report['kind']}, {FLAGS.device}):")
    for name, entry in report["workloads"].items():
        ratios = ", ".join(f"{peer} {ratio:.2f}x" for peer, ratio in entry["ratios"].items()) or "no ratio"
        check = entry["target_check"]
        if check["evaluated"]:
            outcome = {True: "met", False: "NOT met", None: "undecided"}[check["met"]]
            verdict = f"target {entry['target']}: {outcome}"
        else:
            verdict = f"target not evaluated ({check['reason']})"
        print(f"  {name:13s} {ratios}; {verdict}")
    print(f"Wrote {output}")


if __name__ == "__main__":
    app.run(main)
