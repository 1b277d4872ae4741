"""Plumbing shared by the measuring child processes (one process per workload and implementation).

A child runs in its own process so that each framework owns the device alone (JAX preallocates most
of the GPU's memory), its peak memory is its own, and a peer that crashes or hangs costs only its row.
"""

import argparse
import json
import resource
import sys
import time
import traceback


class Skip(Exception):
    """A peer that cannot run here (framework missing, no CUDA device): reported, not a failure."""


def result(status, **fields):
    return dict(status=status, **fields)


def peak_rss_bytes():
    # ru_maxrss is in kilobytes on Linux; it is this process's peak, so each implementation's own.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def images_per_second(batch_size, steps, seconds):
    return batch_size * steps / seconds


def timed(fn):
    """Runs ``fn()`` and returns ``(its value, seconds)``."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(measure):
    """Entry point of a child: ``--spec JSON --result PATH``; writes one JSON result to PATH."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec)
    sys.setrecursionlimit(spec["recursion_limit"])
    try:
        out = measure(spec)
    except Skip as reason:
        out = result("skipped", reason=str(reason))
    except BaseException as error:  # noqa: BLE001 - RecursionError and XLA errors are results too.
        out = result(
            "error",
            reason=f"{type(error).__name__}: {str(error)[:500]}",
            traceback=traceback.format_exc()[-3000:],
        )
    out.setdefault("peak_rss_bytes", peak_rss_bytes())
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
