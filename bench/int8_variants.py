"""Benchmark (not a test): how close TFLite's integer variants come to the float model, and at what speed.

    python bench/int8_variants.py --weights=runs/p164/best.weights.h5 [--model=PreActResNet164]

The exporter's ``int8`` (``export.tflite.convert``: integer end to end, per-channel weights, MinMax
activation ranges over the calibration images) against variants that keep more precision, each converted
from the same BatchNorm-folded float SavedModel and calibrated on the same real CIFAR training images:

* ``int8_float_head``: the average pool, classifier and softmax left in float (TFLite's quantisation
  debugger's ``denylisted_ops``);
* ``int8_float_adds``: the head and every ``ADD`` (the residual sums and the pre-activation BatchNorms'
  shifts) left in float;
* ``int16x8``: 16-bit activations, 8-bit weights (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``).

For each: top-1 agreement with the Keras model and max |probability difference| on ``--parity_images``
real test images, and the seconds LiteRT takes for them in batches of 50 on ``--threads`` threads (the
speed is relative: read the ratio to ``int8`` of the same run). Writes JSON and markdown to ``--out``.
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "PreActResNet164", "Model name (a CIFAR layout).")
flags.DEFINE_string("weights", None, "A Keras weights file of --model (a training run's best.weights.h5).")
flags.DEFINE_string("cifar_dir", os.environ.get("KERAS_PRERESNET_CIFAR_DIR",
                                             os.path.join(os.path.dirname(REPO), "shared", "data", "cifar-subset")),
                    "Folder holding cifar-10-batches-py.")
flags.DEFINE_integer("calibration_images", 64, "Real training images for the calibration.")
flags.DEFINE_integer("parity_images", 500, "Real test images to agree on.")
flags.DEFINE_integer("threads", 1, "LiteRT threads.", lower_bound=1)
flags.DEFINE_string("out", os.path.join(REPO, "bench", "results"), "Folder for the results JSON and table.")
FLAGS = flags.FLAGS

VARIANTS = ("int8", "int8_float_head", "int8_float_adds", "int16x8")
FLOAT_OPS = {"int8_float_head": ["MEAN", "FULLY_CONNECTED", "SOFTMAX"],
             "int8_float_adds": ["MEAN", "FULLY_CONNECTED", "SOFTMAX", "ADD"]}
BATCH = 50


def convert(tf, saved_model_dir, variant, calibration):
    from keras_preresnet.export import tflite

    if variant == "int8":
        return tflite.convert(saved_model_dir, "int8", calibration)

    def representative():
        for image in calibration:
            yield [image[np.newaxis]]

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["probabilities"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    if variant == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        return converter.convert()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=FLOAT_OPS[variant]))
    return debugger.get_nondebug_quantized_model()


def main(argv):
    del argv
    import dataclasses

    import tensorflow as tf

    import export_testing
    import keras_preresnet
    from keras_preresnet import export
    from keras_preresnet.datasets import load_cifar
    from keras_preresnet.export import images, saved_model
    from keras_preresnet.runtimes import LiteRTModel

    def pngs(pixels, folder):  # the exporter's path: real images as files, preprocessed as served
        return images.list_images(export_testing.write_pngs(pixels, folder))

    if not FLAGS.weights:
        raise app.UsageError("--weights is required: agreement on random weights says little (see bench/serving.py).")
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    servable = export.build(FLAGS.model, weights=FLAGS.weights)
    test_pixels, _ = load_cifar(FLAGS.cifar_dir, "cifar10", "test")
    train_pixels, _ = load_cifar(FLAGS.cifar_dir, "cifar10", "train")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        x = images.preprocessed_batch(servable, pngs(test_pixels[:FLAGS.parity_images], os.path.join(tmp, "parity")))
        calibration = images.preprocessed_batch(
            servable, pngs(train_pixels[:FLAGS.calibration_images], os.path.join(tmp, "calibration")))
        reference = servable.model.predict(x, batch_size=BATCH, verbose=0)
        folded = dataclasses.replace(servable, model=keras_preresnet.fold_batchnorm(servable.model))
        float_dir = os.path.join(tmp, "float")
        saved_model.save(*saved_model.probabilities_module(folded), float_dir)
        for variant in VARIANTS:
            path = os.path.join(tmp, f"{variant}.tflite")
            with open(path, "wb") as f:
                f.write(convert(tf, float_dir, variant, calibration))
            model = LiteRTModel(path, FLAGS.threads)
            started = time.perf_counter()
            outputs = np.concatenate([model.predict(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])
            seconds = time.perf_counter() - started
            rows.append({"variant": variant, "agreement": float(np.mean(outputs.argmax(-1) == reference.argmax(-1))),
                         "max_abs_diff": float(np.abs(outputs - reference).max()), "seconds": seconds})
            print(f"{variant}: agreement {rows[-1]['agreement']:.1%}, max |diff| {rows[-1]['max_abs_diff']:.3f}, "
                  f"{seconds:.1f} s", flush=True)
    base = rows[0]["seconds"]
    meta = {"model": FLAGS.model, "weights": FLAGS.weights, "parity_images": len(x),
            "calibration_images": len(calibration), "threads": FLAGS.threads,
            "load_average": os.getloadavg()[0], "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    name = os.path.join(FLAGS.out, f"int8_variants_{FLAGS.model}")
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(name + ".json.tmp", "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    os.replace(name + ".json.tmp", name + ".json")
    lines = [f"# TFLite integer variants of {FLAGS.model} against the float model (`bench/int8_variants.py`)", "",
             f"{meta['written']}; weights `{FLAGS.weights}`; {len(x)} real CIFAR-10 test images; "
             f"{len(calibration)} calibration images; LiteRT, {FLAGS.threads} thread(s), batches of {BATCH}; "
             f"load average {meta['load_average']:.1f} (the time is relative: read the ratio).", "",
             "| variant | top-1 agreement | max abs diff | time vs int8 |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['variant']} | {r['agreement']:.1%} | {r['max_abs_diff']:.3f} | {r['seconds'] / base:.2f}x |"
              for r in rows]
    with open(name + ".md.tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(name + ".md.tmp", name + ".md")
    print(f"int8_variants: wrote {name}.json and {name}.md")


if __name__ == "__main__":
    app.run(main)
