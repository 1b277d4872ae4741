"""CPU serving speed of every exported format against PyTorch and ONNX Runtime on PyTorch's own export.

    python bench/serving.py [--model=PreActResNet164] [--threads=2] [--out=bench/results]

One process, one run. It exports the model with ``export.export_model`` (BatchNorm folded; every float
artifact first passes its parity check on real CIFAR images), builds the PyTorch model of the same
layout, exports that with ``torch.onnx.export`` and quantises the export with ONNX Runtime's static int8
(QDQ, per channel, calibrated on real images). Then every runtime takes turns, one call each per round,
so that load from other processes falls on all of them alike: batch-1 latency (median and p99) and
batch-N throughput (from the median batch time). Ratios are taken against the best float peer (PyTorch
eager or ORT on PyTorch's ONNX) and, for int8, against ORT's int8, all measured in the same rounds.

Every runtime gets the same number of threads (TensorFlow: intra-op, with one inter-op thread;
PyTorch: ``torch.set_num_threads``; ORT: intra-op; LiteRT: ``num_threads`` with XNNPACK). The run
records the load average and the CPU other processes used before and during the timing: on a shared
machine the absolute figures move, the ratios less. Not a test.

Weights are random with trained-like activation scales (``tests/export_testing.plausible_random_weights``
for ours, BatchNorm statistics of the same images for the PyTorch model); the speed does not depend on
them. Top-1 agreement between a random net's artifacts says little (its classes are close), so
``--weights=<model_dir>/best.weights.h5`` gives ours a training run's weights, and ``--parity_images``
more real images to agree on:

    python bench/serving.py --weights=runs/p164/best.weights.h5 --parity_images=500 --threads=1
"""

import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The runtimes take turns: PyTorch's OpenMP workers must not spin on the cores after each of its calls,
# or they slow down whichever runtime is timed next.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string("model", "PreActResNet164", "Model name (CIFAR or ImageNet layout).")
flags.DEFINE_list("units_per_stage", [], "Override the units per stage (e.g. 2,2,2,2 for a short ImageNet net).")
flags.DEFINE_string("cifar_dir", os.environ.get("KERAS_PRERESNET_CIFAR_DIR",
                                             os.path.join(os.path.dirname(REPO), "shared", "data", "cifar-subset")),
                    "Folder holding cifar-10-batches-py (parity, calibration and request images).")
flags.DEFINE_integer("threads", 2, "Threads of every runtime.", lower_bound=1)
flags.DEFINE_integer("batch", 32, "Batch size of the throughput measurement.")
flags.DEFINE_integer("rounds", 40, "Timed batch-1 rounds (each runtime once per round).")
flags.DEFINE_integer("batch_rounds", 8, "Timed batch rounds.")
flags.DEFINE_integer("calibration_images", 64, "Real images for int8 calibration (ours and ORT's).")
flags.DEFINE_string("weights", None, "A Keras weights file of --model (a training run's, e.g. <model_dir>/"
                    "best.weights.h5) for ours instead of random weights: top-1 agreement of the artifacts, int8 above all, "
                    "then means what it means for a trained net. The PyTorch peers keep random weights (speed does not "
                    "depend on them).")
flags.DEFINE_integer("parity_images", 32, "Real test images for every artifact's parity (max |diff|, top-1 agreement).")
flags.DEFINE_string("out", os.path.join(REPO, "bench", "results"), "Folder for the results JSON and table.")
FLAGS = flags.FLAGS

PEERS = ("torch_eager", "ort_on_torch_onnx")
INT8_PEER = "ort_int8_on_torch_onnx"
# The SavedModel in a Session whose ops all run in the calling thread (inter-op threads -1): TF Serving with
# --tensorflow_intra_op_parallelism=N --tensorflow_inter_op_parallelism=-1.
CALLER_THREAD_ROW = "saved_model/preprocessed (Session, inter-op -1)"
CALLER_THREAD_BYTES_ROW = "saved_model/serving_default (PNG bytes, Session, inter-op -1)"


# -------------------------------------------------------------------------------------------------
# The machine's load
# -------------------------------------------------------------------------------------------------

def _cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process) since boot."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return busy / ticks, (int(own[11]) + int(own[12])) / ticks


class LoadMeter:
    """CPU cores that other processes kept busy over a window, and the load averages around it."""

    def __init__(self):
        self.load_before = os.getloadavg()
        self._start = (time.monotonic(),) + _cpu_seconds()

    def stop(self):
        wall, busy, own = (time.monotonic(),) + _cpu_seconds()
        wall0, busy0, own0 = self._start
        return dict(load_average_before=self.load_before, load_average_after=os.getloadavg(),
                    other_processes_cores=max(0.0, ((busy - busy0) - (own - own0)) / (wall - wall0)),
                    this_process_cores=(own - own0) / (wall - wall0), seconds=wall - wall0)


def idle_check(seconds=3.0):
    meter = LoadMeter()
    time.sleep(seconds)
    return meter.stop()


# -------------------------------------------------------------------------------------------------
# Timing
# -------------------------------------------------------------------------------------------------

def interleaved(fns, inputs, rounds, warmup=2):
    """``{name: [seconds]}`` of ``fns[name](inputs[name])``, the runtimes taking turns each round."""
    for name, fn in fns.items():
        for _ in range(warmup):
            fn(inputs[name])
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(inputs[name])
            times[name].append(time.perf_counter() - start)
    return times


# -------------------------------------------------------------------------------------------------
# The PyTorch peer
# -------------------------------------------------------------------------------------------------

def _torch_imagenet_model(torch, blocks, classes):
    """Pre-activation bottleneck ResNet in the ImageNet layout (7x7/2 stem, max pool, widths 64-512 x 4)."""
    nn = torch.nn

    class Unit(nn.Module):
        def __init__(self, in_channels, width, stride):
            super().__init__()
            out = 4 * width
            self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(in_channels), nn.BatchNorm2d(width), nn.BatchNorm2d(width)
            self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
            self.conv3 = nn.Conv2d(width, out, 1, bias=False)
            project = stride != 1 or in_channels != out
            self.shortcut = nn.Conv2d(in_channels, out, 1, stride=stride, bias=False) if project else None

        def forward(self, x):
            preact = torch.relu(self.bn1(x))
            shortcut = x if self.shortcut is None else self.shortcut(preact)
            y = self.conv2(torch.relu(self.bn2(self.conv1(preact))))
            return self.conv3(torch.relu(self.bn3(y))) + shortcut

    layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    for width, stride, units in zip((64, 128, 256, 512), (1, 2, 2, 2), blocks):
        for unit in range(units):
            layers.append(Unit(channels, width, stride if unit == 0 else 1))
            channels = 4 * width
    layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def torch_peer(layout, blocks, classes, calibration_nchw):
    """The PyTorch model of the same layout, in eval mode, BatchNorm statistics from real images."""
    import torch

    from bench import measure_torch

    torch.manual_seed(0)
    if layout == "cifar":
        model = measure_torch._cifar_model(torch, blocks, classes)
    else:
        model = _torch_imagenet_model(torch, blocks, classes)
    # BatchNorm statistics of real images (momentum None: their plain average), as ours get.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(calibration_nchw))
    return model.eval()


def export_torch_onnx(model, size, path):
    import torch

    torch.onnx.export(model, torch.zeros(1, 3, size, size), path, input_names=["inputs"], output_names=["logits"],
                      dynamic_axes={"inputs": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def quantize_onnx_int8(float_path, int8_path, calibration_nchw):
    """ONNX Runtime's static int8 quantisation: QDQ, per channel, MinMax over the calibration images."""
    from onnxruntime import quantization

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self._images = iter(calibration_nchw[i : i + 1] for i in range(len(calibration_nchw)))

        def get_next(self):
            image = next(self._images, None)
            return None if image is None else {"inputs": image}

    quantization.quantize_static(float_path, int8_path, Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=True, activation_type=quantization.QuantType.QInt8,
                                 weight_type=quantization.QuantType.QInt8)
    return int8_path


def ort_session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


# -------------------------------------------------------------------------------------------------
# The run
# -------------------------------------------------------------------------------------------------

def session_callable(tf, path, signature, input_name, threads, inter_op=1):
    """A call of ``signature`` through a TF1 ``Session`` on the SavedModel at ``path``: what TF Serving runs
    (``SavedModelBundle``, then ``Session::Run`` on the signature's tensors), without the Python function
    call of ``tf.saved_model.load``'s signatures.

    ``inter_op`` is the session's ``inter_op_parallelism_threads``, TF Serving's
    ``--tensorflow_inter_op_parallelism``: with ``-1`` TensorFlow's ``DirectSession`` runs every op in the
    calling thread instead of handing each to its inter-op pool."""
    graph = tf.Graph()
    with graph.as_default():
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                          inter_op_parallelism_threads=inter_op)
        session = tf.compat.v1.Session(graph=graph, config=config)
        meta = tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING], path)
        spec = meta.signature_def[signature]
        return session.make_callable(spec.outputs["probabilities"].name, feed_list=[spec.inputs[input_name].name])


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    idle = idle_check()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import torch

    torch.set_num_threads(FLAGS.threads)

    import export_testing
    from keras_preresnet import export, models
    from keras_preresnet.datasets import load_cifar
    from keras_preresnet.export import images, onnx, saved_model, tflite
    from keras_preresnet.runtimes import FLOAT_INPUT, PREPROCESSED_SIGNATURE, LiteRTModel, OnnxModel

    if FLAGS.weights and FLAGS.units_per_stage:
        raise app.UsageError("--weights and --units_per_stage do not go together: the weights fit the full net.")
    servable = export.build(FLAGS.model, weights=FLAGS.weights)
    units = tuple(int(u) for u in FLAGS.units_per_stage)
    key = models.resolve_architecture(FLAGS.model)
    layout = models.ARCHITECTURES[key]["layout"]
    if units:
        import keras_preresnet

        model = keras_preresnet.build_named(key, units_per_stage=units, scan_units=False,
                                            classes=servable.model.output_shape[-1])
        servable = export.Servable(model, f"{servable.name}-units{'-'.join(map(str, units))}", servable.labels,
                                   servable.preprocessing)
    size = servable.image_size
    test_pixels, _ = load_cifar(FLAGS.cifar_dir, "cifar10", "test")
    train_pixels, _ = load_cifar(FLAGS.cifar_dir, "cifar10", "train")
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        parity_dir = export_testing.write_pngs(test_pixels[:max(FLAGS.batch, FLAGS.parity_images)],
                                               os.path.join(tmp, "parity"))
        calibration_dir = export_testing.write_pngs(train_pixels[:FLAGS.calibration_images],
                                                    os.path.join(tmp, "calibration"))
        parity_files = images.list_images(parity_dir)
        calibration = images.preprocessed_batch(servable, images.list_images(calibration_dir))
        if not FLAGS.weights:
            export_testing.plausible_random_weights(servable.model, calibration)
        result = export.export_model(
            servable, os.path.join(tmp, "out"), formats=("saved_model", "tflite", "onnx"),
            quantize=("float16", "int8"), parity_data=parity_dir, calibration_data=calibration_dir,
            parity_images=FLAGS.parity_images, calibration_images=FLAGS.calibration_images, fold_batchnorm=True,
            log=lambda *a: None)
        reports = {r.artifact: r.as_dict() for r in result.reports}

        parity_files = parity_files[:FLAGS.batch]
        batch = images.preprocessed_batch(servable, parity_files)  # real images, [N, size, size, 3]
        encoded = images.read_encoded(parity_files)
        nchw = lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # noqa: E731
        blocks = units or _blocks_of(servable.model)
        peer = torch_peer(layout, blocks, servable.model.output_shape[-1], nchw(calibration))
        torch_onnx = export_torch_onnx(peer, size, os.path.join(tmp, "torch.onnx"))
        torch_int8 = quantize_onnx_int8(torch_onnx, os.path.join(tmp, "torch-int8.onnx"), nchw(calibration))

        loaded = tf.saved_model.load(result.paths["saved_model"])
        floats = loaded.signatures[PREPROCESSED_SIGNATURE]
        serve = loaded.signatures[saved_model.SERVING_SIGNATURE]

        def torch_eager(x):
            with torch.inference_mode():
                return peer(torch.from_numpy(x)).numpy()

        tfl = lambda variant: LiteRTModel(  # noqa: E731
            os.path.join(result.paths["tflite"], tflite.filename(variant)), FLAGS.threads).predict
        fns = {
            "torch_eager": (torch_eager, "nchw"),
            "ort_on_torch_onnx": (ort_session(torch_onnx, FLAGS.threads), "nchw"),
            INT8_PEER: (ort_session(torch_int8, FLAGS.threads), "nchw"),
            "saved_model/preprocessed": (
                lambda x: floats(**{FLOAT_INPUT: tf.constant(x)})["probabilities"].numpy(), "nhwc"),
            "saved_model/preprocessed (Session, as TF Serving)": (session_callable(
                tf, result.paths["saved_model"], PREPROCESSED_SIGNATURE, FLOAT_INPUT, FLAGS.threads), "nhwc"),
            CALLER_THREAD_ROW: (session_callable(
                tf, result.paths["saved_model"], PREPROCESSED_SIGNATURE, FLOAT_INPUT, FLAGS.threads, inter_op=-1),
                "nhwc"),
            "saved_model/serving_default (PNG bytes)": (
                lambda x: serve(**{saved_model.IMAGES_INPUT: tf.constant(x)})["probabilities"].numpy(), "bytes"),
            CALLER_THREAD_BYTES_ROW: (session_callable(
                tf, result.paths["saved_model"], saved_model.SERVING_SIGNATURE, saved_model.IMAGES_INPUT,
                FLAGS.threads, inter_op=-1), "bytes"),
            "tflite/float32": (tfl("float32"), "nhwc"),
            "tflite/float16": (tfl("float16"), "nhwc"),
            "tflite/int8": (tfl("int8"), "nhwc"),
            "onnx (ORT)": (OnnxModel(os.path.join(result.paths["onnx"], onnx.FILENAME), FLAGS.threads).predict, "nhwc"),
        }
        # The Session rows run the same graphs as the loaded signatures: check before timing them.
        for row, same_as, form in ((CALLER_THREAD_ROW, "saved_model/preprocessed", batch[:4]),
                                   (CALLER_THREAD_BYTES_ROW, "saved_model/serving_default (PNG bytes)",
                                    np.array(encoded[:4], dtype=object))):
            np.testing.assert_allclose(fns[row][0](form), fns[same_as][0](form), atol=1e-6, err_msg=row)
        # ORT's int8 against its own float model, on the same real images.
        peer_float = _softmax(fns["ort_on_torch_onnx"][0](nchw(batch)))
        peer_int8 = _softmax(fns[INT8_PEER][0](nchw(batch)))
        int8_peer_agreement = float(np.mean(peer_float.argmax(-1) == peer_int8.argmax(-1)))

        def inputs_of(n):
            forms = {"nhwc": batch[:n], "nchw": nchw(batch[:n]), "bytes": np.array(encoded[:n], dtype=object)}
            return {name: forms[form] for name, (_, form) in fns.items()}

        callables = {name: fn for name, (fn, _) in fns.items()}
        meter = LoadMeter()
        latency = interleaved(callables, inputs_of(1), FLAGS.rounds)
        throughput = interleaved(callables, inputs_of(FLAGS.batch), FLAGS.batch_rounds, warmup=1)
        load = meter.stop()

    rows = {}
    for name in fns:
        one, many = np.array(latency[name]), np.array(throughput[name])
        rows[name] = dict(latency_ms=float(np.median(one) * 1e3), latency_p99_ms=float(np.percentile(one, 99) * 1e3),
                          images_per_s=float(FLAGS.batch / np.median(many)))
    best_latency = min(rows[p]["latency_ms"] for p in PEERS)
    best_throughput = max(rows[p]["images_per_s"] for p in PEERS)
    for name, row in rows.items():
        int8 = "int8" in name
        ref = rows[INT8_PEER] if int8 else dict(latency_ms=best_latency, images_per_s=best_throughput)
        row["latency_ratio"] = ref["latency_ms"] / row["latency_ms"]
        row["throughput_ratio"] = row["images_per_s"] / ref["images_per_s"]
    write_results(servable, rows, reports, int8_peer_agreement, idle, load)


def _blocks_of(model):
    """Units per stage of a built model, from its unit layer names (``conv3_block7_...``)."""
    counts = {}
    for layer in model.layers:
        parts = layer.name.split("_")
        if len(parts) >= 2 and parts[0].startswith("conv") and parts[1].startswith("block"):
            counts.setdefault(parts[0], set()).add(parts[1])
    return tuple(len(counts[stage]) for stage in sorted(counts))


REPORT_OF = {"saved_model/preprocessed": "saved_model/preprocessed",
             "saved_model/preprocessed (Session, as TF Serving)": "saved_model/preprocessed",
             CALLER_THREAD_ROW: "saved_model/preprocessed",
             "saved_model/serving_default (PNG bytes)": "saved_model/serving_default",
             CALLER_THREAD_BYTES_ROW: "saved_model/serving_default",
             "tflite/float32": "tflite/float32", "tflite/float16": "tflite/float16", "tflite/int8": "tflite/int8",
             "onnx (ORT)": "onnx"}


def write_results(servable, rows, reports, int8_peer_agreement, idle, load):
    n = FLAGS.batch
    lines = [
        f"# Serving speed on the CPU: {servable.name} ({servable.image_size}x{servable.image_size}, "
        f"{servable.model.count_params():,} parameters, BatchNorm folded)",
        "",
        f"{platform.machine()}, {os.cpu_count()} cores, {FLAGS.threads} threads for every runtime; batch-1 latency "
        f"over {FLAGS.rounds} interleaved rounds, batch-{n} throughput from the median of {FLAGS.batch_rounds}. "
        f"Float ratios are against the best float peer of the same run (PyTorch eager or ORT on PyTorch's ONNX), "
        f"int8 ratios against ORT's static int8 (QDQ, per channel, calibrated on {FLAGS.calibration_images} real "
        f"images; top-1 agreement with its float model {int8_peer_agreement:.0%}).",
        "",
        (f"Our weights: {os.path.basename(FLAGS.weights)} (trained); the PyTorch peers' random. " if FLAGS.weights
         else "Weights random with trained-like activation scales. ")
        + f"max abs diff and top-1 agreement: each artifact against the Keras model on {FLAGS.parity_images} real "
        f"test images ({FLAGS.batch} for the peer's int8).",
        "",
        f"Load: before start, other processes kept {idle['other_processes_cores']:.2f} cores busy "
        f"(load average {idle['load_average_before'][0]:.1f}); during the timing {load['other_processes_cores']:.2f} "
        f"cores (load average {load['load_average_before'][0]:.1f} -> {load['load_average_after'][0]:.1f}). "
        + ("The machine was shared: absolute times are inflated, the ratios of the same rounds less so."
           if max(idle["other_processes_cores"], load["other_processes_cores"]) > 0.2 else "The machine was idle."),
        "",
        f"| runtime | batch 1 median (ms) | p99 (ms) | vs peer | batch {n} (img/s) | vs peer | max abs diff | top-1 agree |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        report = reports.get(REPORT_OF.get(name))
        parity_text = f"{report['max_abs_diff']:.2g} | {report['top1_agreement']:.0%}" if report else "- | -"
        if name == INT8_PEER:
            parity_text = f"- | {int8_peer_agreement:.0%}"
        lines.append(f"| {name} | {row['latency_ms']:.2f} | {row['latency_p99_ms']:.2f} | {row['latency_ratio']:.2f}x | "
                     f"{row['images_per_s']:.0f} | {row['throughput_ratio']:.2f}x | {parity_text} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(FLAGS.out, exist_ok=True)
    stem = os.path.join(FLAGS.out, f"serving_{servable.name}")
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(dict(model=servable.name, batch=n, threads=FLAGS.threads, rounds=FLAGS.rounds,
                       batch_rounds=FLAGS.batch_rounds, weights=FLAGS.weights, parity_images=FLAGS.parity_images,
                       idle_check=idle, load_during_timing=load, rows=rows,
                       parity=reports, int8_peer_top1_agreement=int8_peer_agreement,
                       machine=platform.platform()), f, indent=2)
    print(f"\nSaved {stem}.md and .json")


if __name__ == "__main__":
    app.run(main)
