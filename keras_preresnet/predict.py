"""Command line: label image files, folders or globs with a model's top-k classes.

    python -m keras_preresnet.predict photos/ --model=PreActResNet200 --weights=imagenet
    python -m keras_preresnet.predict 'shots/*.png' --model=runs/cifar10 --top_k=3 --output=labels.csv
    python -m keras_preresnet.predict cat.jpg --model=models/PreActResNet200/1 --cam=heatmaps/

The model is a builder name with ``--weights`` (``imagenet``, a ``.t7`` or a ``.weights.h5``), a
training run's ``model_dir`` (its run.json gives network, classes and preprocessing), or an exported
SavedModel folder, ``.tflite`` or ``.onnx`` file (its serving.json gives labels and preprocessing).
Every image is decoded and preprocessed as the model was trained or exported
(``keras_preresnet.preprocessing.preprocess``). An unreadable image is reported by name and skipped;
the exit status is then 1, as for a model that cannot be loaded (2 for a usage error, 0 when every
image was labelled).
"""

import csv
import dataclasses
import glob
import io
import json
import os
import sys

import keras
import numpy as np
from absl import flags

from keras_preresnet import cli, files, preprocessing, resolve
from keras_preresnet.analysis import cam

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
OUTPUT_FORMATS = (".csv", ".json")
# Heat-map PNGs of smaller images are enlarged by an integer factor to at least this side.
CAM_MIN_SIDE = 224
PROG = "predict"


@dataclasses.dataclass
class Classifier:
    """What predict runs: preprocessed float batches -> probabilities, with labels and preprocessing."""

    predict: object
    labels: tuple
    preprocessing: str
    image_size: int
    keras_model: object = None  # for Grad-CAM; None for exported artifacts
    description: str = ""


def load_classifier(model, weights=None, classes=None, preprocessing_name=None):
    """The ``Classifier`` of ``--model`` (a builder name, run folder, SavedModel, .tflite or .onnx)."""
    found = resolve.resolve(model, weights, classes, preprocessing_name, artifacts=True)
    if found.model is None:
        return Classifier(found.runner.predict, found.labels, found.preprocessing, found.image_size,
                          description=found.description)

    def run(batch):
        return keras.ops.convert_to_numpy(found.model.predict(batch, verbose=0))

    return Classifier(run, found.labels, found.preprocessing, found.image_size, found.model, found.description)


def list_images(specs):
    """Files, folders (searched recursively for images) and globs -> ``(files, problems)``, in order."""
    files, problems = [], []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(spec)
                for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                problems.append((spec, "folder holds no images (" + ", ".join(IMAGE_EXTENSIONS) + ")"))
            files += found
        elif os.path.exists(spec):
            files.append(spec)
        elif glob.has_magic(spec):
            found = sorted(path for path in glob.glob(spec, recursive=True) if os.path.isfile(path))
            if not found:
                problems.append((spec, "no file matches this pattern"))
            files += found
        else:
            problems.append((spec, "no such file or folder"))
    return list(dict.fromkeys(files)), problems


def read_image(path):
    """The file's RGB pixels, uint8 ``[H, W, 3]``; ValueError naming the file if it is not an image."""
    import tensorflow as tf

    try:
        with open(path, "rb") as f:
            data = f.read()
        return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except OSError as error:
        raise ValueError(f"cannot read: {error.strerror or error}") from error
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        raise ValueError("not a readable JPEG, PNG, GIF or BMP image") from None


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total, enabled, stream=None, width=30):
        self.total, self.enabled, self.width = total, enabled, width
        self.stream = stream or sys.stderr
        self.done = 0

    def update(self, count):
        if not self.enabled:
            return
        self.done += count
        filled = self.width * self.done // max(self.total, 1)
        self.stream.write(f"\r[{'=' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} images")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _top_k(probabilities, labels, k):
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [dict(rank=r + 1, index=int(i), label=labels[i], probability=float(probabilities[i]))
            for r, i in enumerate(order)]


def format_table(rows):
    """The terminal table: one line per image, its top-k classes with probabilities."""
    if not rows:
        return ""
    width = max(len(row["file"]) for row in rows)
    lines = []
    for row in rows:
        cells = "  ".join(f"{p['label']} {100 * p['probability']:.1f}%" for p in row["predictions"])
        lines.append(f"{row['file']:<{width}}  {cells}")
    return "\n".join(lines) + "\n"


def write_output(path, rows, failures):
    """Writes the predictions to ``path`` as CSV (one row per image and rank) or JSON."""
    if path.lower().endswith(".json"):
        text = json.dumps(dict(predictions=rows, failed=[dict(file=f, error=e) for f, e in failures]), indent=2)
        files.write_bytes(path, text + "\n")
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "rank", "class_index", "label", "probability"])
    for row in rows:
        for p in row["predictions"]:
            writer.writerow([row["file"], p["rank"], p["index"], p["label"], f"{p['probability']:.6f}"])
    files.write_bytes(path, buffer.getvalue())


def _cam_path(directory, file, used):
    stem = os.path.splitext(os.path.basename(file))[0]
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.png"
    used.add(name)
    return os.path.join(directory, name)


def _write_png(path, image):
    import tensorflow as tf

    files.write_bytes(path, tf.io.encode_png(image).numpy())


def predict_files(classifier, files, top_k=5, batch_size=16, cam_dir=None, progress=None):
    """Labels ``files``; returns ``(rows, failures)``. Writes a Grad-CAM PNG per image to ``cam_dir``."""
    rows, failures, used = [], [], set()
    progress = progress or Progress(len(files), False)
    for start in range(0, len(files), batch_size):
        chunk, images, inputs = [], [], []
        for path in files[start: start + batch_size]:
            try:
                image = read_image(path)
            except ValueError as error:
                failures.append((path, str(error)))
                continue
            chunk.append(path)
            images.append(image)
            inputs.append(preprocessing.preprocess(image, classifier.preprocessing, classifier.image_size))
        if chunk:
            probabilities = np.asarray(classifier.predict(np.stack(inputs)), np.float32)
            for path, p in zip(chunk, probabilities):
                rows.append(dict(file=path, predictions=_top_k(p, classifier.labels, top_k)))
            if cam_dir is not None:
                maps = cam.grad_cam(classifier.keras_model, np.stack(inputs), probabilities.argmax(-1))
                for path, image, heat in zip(chunk, images, maps):
                    box = preprocessing.crop_box(image.shape[0], image.shape[1], classifier.preprocessing,
                                                 classifier.image_size)
                    # Small images (CIFAR's 32x32) are enlarged, pixel by pixel, to be seen.
                    factor = max(1, -(-CAM_MIN_SIDE // max(image.shape[:2])))
                    image = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
                    box = tuple(factor * v for v in box)
                    _write_png(_cam_path(cam_dir, path, used), cam.overlay(image, heat, box))
        progress.update(len(files[start: start + batch_size]))
    return rows, failures


FLAGS = cli.new_flags()
flags.DEFINE_string("model", None, "builder name (PreActResNet200), training run folder, SavedModel folder, .tflite "
                    "or .onnx", flag_values=FLAGS)
flags.DEFINE_string("weights", None, "with a builder name: imagenet, a .t7 or a .weights.h5 file", flag_values=FLAGS)
flags.DEFINE_string("classes", None, "with a builder name: the number of classes or a label file (one label per line)",
                    flag_values=FLAGS)
flags.DEFINE_enum("preprocessing", None, list(preprocessing.PREPROCESSING),
                  "with a builder name: the training set's preprocessing (default: from the layout)", flag_values=FLAGS)
flags.DEFINE_integer("top_k", 5, "classes shown per image", flag_values=FLAGS)
flags.DEFINE_string("output", None, "write the predictions to a .csv or .json file", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 16, "images per forward pass", flag_values=FLAGS)
flags.DEFINE_string("cam", None, "write a Grad-CAM heat-map PNG per image into this folder (Keras models)",
                    flag_values=FLAGS)
flags.DEFINE_bool("progress", None, "progress bar on stderr (default: when stderr is a terminal)", flag_values=FLAGS)


def _predict(images):
    if not images:
        raise cli.usage_error("Give one or more image files, folders or globs ('*.jpg').")
    cli.check_arguments([PROG], FLAGS, ("model",))
    if FLAGS.top_k < 1 or FLAGS.batch_size < 1:
        raise ValueError(f"--top_k and --batch_size must be positive; received {FLAGS.top_k}, {FLAGS.batch_size}.")
    if FLAGS.output is not None and not FLAGS.output.lower().endswith(OUTPUT_FORMATS):
        raise ValueError(f"--output must end in {' or '.join(OUTPUT_FORMATS)}; received {FLAGS.output!r}.")
    if FLAGS.output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(FLAGS.output))):
        raise ValueError(f"The folder of --output={FLAGS.output!r} does not exist.")
    found, failures = list_images(images)
    classifier = load_classifier(FLAGS.model, FLAGS.weights, FLAGS.classes, FLAGS.preprocessing)
    if FLAGS.cam is not None:
        if classifier.keras_model is None:
            raise ValueError("--cam needs a Keras model (a builder name or a training run), not an exported one.")
        os.makedirs(FLAGS.cam, exist_ok=True)
    enabled = sys.stderr.isatty() if FLAGS.progress is None else FLAGS.progress
    rows, unreadable = predict_files(classifier, found, min(FLAGS.top_k, len(classifier.labels)), FLAGS.batch_size,
                                     FLAGS.cam, Progress(len(found), enabled and len(found) > 1))
    inputs = len(found) + len(failures)
    failures += unreadable
    for path, error in failures:
        print(f"{PROG}: skipped {path}: {error}", file=sys.stderr)
    if FLAGS.output is None:
        sys.stdout.write(format_table(rows))
    else:
        write_output(FLAGS.output, rows, failures)
        print(f"{PROG}: wrote {len(rows)} predictions to {FLAGS.output}", file=sys.stderr)
    if failures:
        print(f"{PROG}: {len(failures)} of {inputs} inputs could not be labelled.", file=sys.stderr)
        return cli.EXIT_FAILURE
    return cli.EXIT_OK


# ImportError: an exported model whose runtime (onnxruntime, ai-edge-litert) is not installed.
main = cli.main_of(PROG, FLAGS, __doc__, _predict, failures=(ImportError,))


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
