"""Command line: label image files, folders or globs with a model's top-k classes.

    python -m keras_preresnet.predict photos/ --model=PreActResNet200 --weights=imagenet
    python -m keras_preresnet.predict 'shots/*.png' --model=runs/cifar10 --top_k=3 --output=labels.csv
    python -m keras_preresnet.predict cat.jpg --model=models/PreActResNet200/1 --cam=heatmaps/

The model is a builder name with ``--weights`` (``imagenet``, a ``.t7`` or a ``.weights.h5``), a
training run's ``model_dir`` (its run.json gives network, classes and preprocessing), or an exported
SavedModel folder, ``.tflite`` or ``.onnx`` file (its serving.json gives labels and preprocessing).
Every image is decoded and preprocessed as the model was trained or exported
(``keras_preresnet.preprocessing.preprocess``). An unreadable image is reported by name and skipped;
the exit status is then 1 (2 for a usage or model error, 0 when every image was labelled).
"""

import argparse
import csv
import dataclasses
import glob
import io
import json
import os
import sys

import numpy as np

from keras_preresnet import console, files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
OUTPUT_FORMATS = (".csv", ".json")
# Heat-map PNGs of smaller images are enlarged by an integer factor to at least this side.
CAM_MIN_SIDE = 224
EXIT_SOME_FAILED = 1
EXIT_ERROR = 2


@dataclasses.dataclass
class Classifier:
    """What predict runs: preprocessed float batches -> probabilities, with labels and preprocessing."""

    predict: object
    labels: tuple
    preprocessing: str
    image_size: int
    keras_model: object = None  # for Grad-CAM; None for exported artifacts
    description: str = ""


def _keras_classifier(model, labels, preprocessing_name, description):
    import keras

    size = model.input_shape[1]
    if size is None:
        raise ValueError(f"Model {model.name!r} has no fixed input size; build it with include_top=True.")
    if len(labels) != model.output_shape[-1]:
        raise ValueError(f"{len(labels)} labels for a model with {model.output_shape[-1]} classes.")

    def run(batch):
        return keras.ops.convert_to_numpy(model.predict(batch, verbose=0))

    return Classifier(run, tuple(labels), preprocessing_name, int(size), model, description)


def load_classifier(model, weights=None, classes=None, preprocessing_name=None):
    """The ``Classifier`` of ``--model`` (a builder name, run folder, SavedModel, .tflite or .onnx)."""
    from keras_preresnet import labels as labels_lib
    from keras_preresnet import models, preprocessing, runs, runtimes

    path = os.fspath(model)
    if runs.is_run(path):
        keras_model, record = runs.build_from_run(path)
        return _keras_classifier(keras_model, runs.labels(record), record["preprocessing"]["name"],
                                 f"training run {path}")
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        record = runtimes.read_record(os.path.join(path, runtimes.SAVED_MODEL_RECORD))
        runner = runtimes.SavedModelClassifier(path)
    elif path.lower().endswith(".tflite") and os.path.isfile(path):
        record = runtimes.read_record(os.path.join(os.path.dirname(path), runtimes.RECORD_FILENAME))
        runner = runtimes.LiteRTModel(path)
    elif path.lower().endswith(".onnx") and os.path.isfile(path):
        record = runtimes.read_record(os.path.join(os.path.dirname(path), runtimes.RECORD_FILENAME))
        runner = runtimes.OnnxModel(path)
    elif os.path.exists(path):
        raise ValueError(
            f"--model={path!r} is neither a training run (a folder with run.json), an exported SavedModel "
            "folder, a .tflite nor an .onnx file."
        )
    else:
        key = models.resolve_architecture(path)
        count, labels = labels_lib.parse_classes(classes)
        name = preprocessing_name or preprocessing.default_preprocessing(models.ARCHITECTURES[key]["layout"], count)
        keras_model = models.build_named(key, weights=weights, classes=count)
        labels = labels_lib.labels_for(keras_model.output_shape[-1], labels, name)
        return _keras_classifier(keras_model, labels, name, f"{models.public_name(key)} (weights={weights})")
    if weights is not None or classes is not None:
        raise ValueError("--weights and --classes apply to a builder name; an exported model brings its own.")
    return Classifier(runner.predict, tuple(record["labels"]), record["preprocessing"], int(record["image_size"]),
                      description=path)


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


def crop_box(height, width, preprocessing_name, image_size):
    """``(top, left, height, width)`` of the original image the network sees after preprocessing."""
    from keras_preresnet import preprocessing
    from keras_preresnet.datasets import DATASETS

    spec = preprocessing.PREPROCESSING[preprocessing_name]
    if spec["interpolation"] != "torch_bicubic":
        return 0, 0, height, width
    scale = DATASETS[spec["dataset"]].eval_resize_for(image_size) / min(height, width)
    side_h, side_w = min(height, round(image_size / scale)), min(width, round(image_size / scale))
    return (height - side_h + 1) // 2, (width - side_w + 1) // 2, side_h, side_w


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
    from keras_preresnet import preprocessing
    from keras_preresnet.analysis import cam

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
                    box = crop_box(image.shape[0], image.shape[1], classifier.preprocessing, classifier.image_size)
                    # Small images (CIFAR's 32x32) are enlarged, pixel by pixel, to be seen.
                    factor = max(1, -(-CAM_MIN_SIDE // max(image.shape[:2])))
                    image = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
                    box = tuple(factor * v for v in box)
                    _write_png(_cam_path(cam_dir, path, used), cam.overlay(image, heat, box))
        progress.update(len(files[start: start + batch_size]))
    return rows, failures


def parser():
    p = argparse.ArgumentParser(
        prog="python -m keras_preresnet.predict",
        description="Label images with a model's top-k classes.",
    )
    p.add_argument("images", nargs="+", help="image files, folders (searched recursively) or globs ('*.jpg')")
    p.add_argument("--model", required=True,
                   help="builder name (PreActResNet200), training run folder, SavedModel folder, .tflite or .onnx")
    p.add_argument("--weights", default=None, help="with a builder name: imagenet, a .t7 or a .weights.h5 file")
    p.add_argument("--classes", default=None,
                   help="with a builder name: the number of classes or a label file (one label per line)")
    p.add_argument("--preprocessing", default=None, choices=("imagenet", "cifar10", "cifar100"),
                   help="with a builder name: the training set's preprocessing (default: from the layout)")
    p.add_argument("--top_k", type=int, default=5, help="classes shown per image (default: %(default)s)")
    p.add_argument("--output", default=None, help="write the predictions to a .csv or .json file")
    p.add_argument("--batch_size", type=int, default=16, help="images per forward pass (default: %(default)s)")
    p.add_argument("--cam", default=None, metavar="DIR",
                   help="write a Grad-CAM heat-map PNG per image into DIR (Keras models)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    console.add_verbosity_argument(p)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.top_k < 1 or args.batch_size < 1:
            raise ValueError(f"--top_k and --batch_size must be positive; received {args.top_k}, {args.batch_size}.")
        if args.output is not None and not args.output.lower().endswith(OUTPUT_FORMATS):
            raise ValueError(f"--output must end in {' or '.join(OUTPUT_FORMATS)}; received {args.output!r}.")
        if args.output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
            raise ValueError(f"The folder of --output={args.output!r} does not exist.")
        files, failures = list_images(args.images)
        classifier = load_classifier(args.model, args.weights, args.classes, args.preprocessing)
        if args.cam is not None:
            if classifier.keras_model is None:
                raise ValueError("--cam needs a Keras model (a builder name or a training run), not an exported one.")
            os.makedirs(args.cam, exist_ok=True)
    except (ValueError, OSError, ImportError) as error:
        print(f"predict: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    enabled = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        rows, unreadable = predict_files(classifier, files, min(args.top_k, len(classifier.labels)),
                                         args.batch_size, args.cam, Progress(len(files), enabled and len(files) > 1))
        inputs = len(files) + len(failures)
        failures += unreadable
        for path, error in failures:
            print(f"predict: skipped {path}: {error}", file=sys.stderr)
        if args.output is None:
            sys.stdout.write(format_table(rows))
        else:
            write_output(args.output, rows, failures)
            print(f"predict: wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    except OSError as error:  # a heat map or --output the disk refused (files.WriteError)
        print(f"predict: error: {error}", file=sys.stderr)
        return EXIT_SOME_FAILED
    if failures:
        print(f"predict: {len(failures)} of {inputs} inputs could not be labelled.", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
