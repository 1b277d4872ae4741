"""CPU latency and throughput of one model as Keras, SavedModel, TFLite (every variant) and ONNX.

    python bench/export_latency.py --model=PreActResNet164 [--fold_batchnorm] [--out=bench/results]

Exports the model with ``export.export_model`` (so every artifact first passes its parity check on real
CIFAR images), then times each runtime on the same preprocessed batch: the median latency of one image
and the throughput of a batch, with ratios against Keras measured in the same run. With
``--fold_batchnorm`` the folded exports are timed beside the unfolded ones. Not a test: timings depend on
the machine and its load; the results file records both.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository, and tests/ for the helper that gives random weights trained-like activation scales.
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_preresnet import export  # noqa: E402
import keras_preresnet  # noqa: E402
from keras_preresnet.export import images, onnx, saved_model, tflite  # noqa: E402
from keras_preresnet.datasets import load_cifar  # noqa: E402

import export_testing  # noqa: E402

flags.DEFINE_string("model", "PreActResNet164", "Model name.")
flags.DEFINE_string("weights", None, "Weights file or 'imagenet'; random weights by default.")
flags.DEFINE_string("cifar_dir", os.path.join(os.path.dirname(REPO), "shared", "data", "cifar-subset"),
                    "Folder holding cifar-10-batches-py (parity and calibration images).")
flags.DEFINE_integer("batch", 32, "Batch size of the throughput measurement.")
flags.DEFINE_integer("repeats", 20, "Timed calls per measurement (after warm-up).")
flags.DEFINE_integer("threads", os.cpu_count(), "Threads for TFLite and onnxruntime (TF uses its default).")
flags.DEFINE_list("quantize", ["float16", "dynamic", "int8"], "TFLite variants besides float32.")
flags.DEFINE_bool("fold_batchnorm", True, "Also time the BatchNorm-folded exports.")
flags.DEFINE_string("out", os.path.join(REPO, "bench", "results"), "Folder for the results JSON and table.")
FLAGS = flags.FLAGS


def write_images(folder, count, start=0):
    pixels, _ = load_cifar(FLAGS.cifar_dir, "cifar10", "test")
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        tf.io.write_file(os.path.join(folder, f"{i:04d}.png"), tf.io.encode_png(pixels[start + i]))


def timed_rounds(fns, x, repeats):
    """``{name: (median, best)}`` seconds of ``fn(x)``, after two warm-up calls each.

    The runtimes take turns, one call each per round, so that load from other processes on a shared
    machine falls on all of them alike; the best time is the least disturbed one.
    """
    for fn in fns.values():
        fn(x)
        fn(x)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def runtimes(servable, result, tag):
    """``{name: predict(float batch)}`` for every artifact of an export result."""
    keras_model = servable.model
    fns = {f"keras{tag}": lambda x: keras_model.predict_on_batch(x)}
    if "saved_model" in result.paths:
        loaded = tf.saved_model.load(result.paths["saved_model"])
        signature = loaded.signatures[saved_model.PREPROCESSED_SIGNATURE]
        fns[f"saved_model{tag}"] = lambda x, s=signature: s(inputs=tf.constant(x))["probabilities"].numpy()
    for variant in ("float32",) + tuple(FLAGS.quantize):
        model = tflite.LiteRTModel(os.path.join(result.paths["tflite"], tflite.filename(variant)), FLAGS.threads)
        fns[f"tflite_{variant}{tag}"] = model.predict
    model = onnx.OnnxModel(os.path.join(result.paths["onnx"], onnx.FILENAME), FLAGS.threads)
    fns[f"onnx{tag}"] = model.predict
    return fns


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    servable = export.build(FLAGS.model, weights=FLAGS.weights)
    size = servable.image_size
    rows = {}
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        write_images(os.path.join(tmp, "parity"), 16)
        write_images(os.path.join(tmp, "calibration"), 32, start=500)
        if FLAGS.weights is None:
            parity_files = images.list_images(os.path.join(tmp, "parity"))
            export_testing.plausible_random_weights(servable.model, images.preprocessed_batch(servable, parity_files))
        common = dict(formats=("saved_model", "tflite", "onnx"), quantize=FLAGS.quantize,
                      parity_data=os.path.join(tmp, "parity"), calibration_data=os.path.join(tmp, "calibration"))
        result = export.export_model(servable, os.path.join(tmp, "plain"), **common)
        fns = runtimes(servable, result, "")
        parity_rows = {r.artifact: r for r in result.reports}
        if FLAGS.fold_batchnorm:
            folded = export.Servable(keras_preresnet.fold_batchnorm(servable.model), servable.name, servable.labels,
                                     servable.preprocessing)
            folded_result = export.export_model(servable, os.path.join(tmp, "folded"), fold_batchnorm=True, **common)
            fns.update(runtimes(folded, folded_result, "+fold"))
            parity_rows.update({r.artifact + "+fold": r for r in folded_result.reports})

        rng = np.random.default_rng(0)
        one = rng.normal(size=(1, size, size, 3)).astype(np.float32)
        batch = rng.normal(size=(FLAGS.batch, size, size, 3)).astype(np.float32)
        load = os.getloadavg()[0]
        latencies = timed_rounds(fns, one, FLAGS.repeats)
        batch_times = timed_rounds(fns, batch, max(3, FLAGS.repeats // 4))
        for name in fns:
            rows[name] = dict(
                latency_ms=latencies[name][1] * 1e3, latency_median_ms=latencies[name][0] * 1e3,
                throughput=FLAGS.batch / batch_times[name][1], throughput_median=FLAGS.batch / batch_times[name][0],
            )

    base = rows["keras"]
    lines = [
        f"# Export latency: {servable.name} ({size}x{size}, {servable.model.count_params():,} parameters)",
        "",
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; batch {FLAGS.batch}; "
        f"best of {FLAGS.repeats} interleaved calls (medians in the JSON); TFLite/onnxruntime threads "
        f"{FLAGS.threads}; 1-minute load average before timing {load:.1f}; "
        + ("random weights (BatchNorm statistics of the parity images, random gamma/beta, logits of std 2)."
           if FLAGS.weights is None else f"weights {FLAGS.weights}."),
        "",
        "| runtime | latency, 1 image (ms) | speed-up vs Keras | throughput (img/s) | speed-up vs Keras | parity max abs diff | top-1 agree |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    parity_of = {"keras": None, "saved_model": "saved_model/preprocessed", "onnx": "onnx"}
    for name, row in rows.items():
        plain = name.replace("+fold", "")
        key = parity_of.get(plain, plain.replace("tflite_", "tflite/"))
        if name.endswith("+fold"):
            # The folded Keras model is what the folded SavedModel runs.
            key = (key or "saved_model/preprocessed") + "+fold"
        report = parity_rows.get(key)
        parity_text = f"{report.max_abs_diff:.2g} | {report.top1_agreement:.0%}" if report else "reference | -"
        lines.append(
            f"| {name} | {row['latency_ms']:.2f} | {base['latency_ms'] / row['latency_ms']:.2f} | "
            f"{row['throughput']:.1f} | {row['throughput'] / base['throughput']:.2f} | {parity_text} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    os.makedirs(FLAGS.out, exist_ok=True)
    stem = os.path.join(FLAGS.out, f"export_latency_{servable.name}")
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(dict(model=servable.name, batch=FLAGS.batch, threads=FLAGS.threads, load_average=load, rows=rows,
                       parity={k: r.as_dict() for k, r in parity_rows.items()}), f, indent=2)
    print(f"\nSaved {stem}.md and .json")


if __name__ == "__main__":
    app.run(main)
