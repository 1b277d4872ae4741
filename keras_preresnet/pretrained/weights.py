"""Pretrained weights: the table of published checkpoints and loading into a built model.

``weights='imagenet'`` resolves, in this order: the converted Keras file in the cache; the original
Torch7 checkpoint in the cache; a download of that checkpoint from its published URL (or a mirror:
``url=`` / ``$KERAS_PRERESNET_WEIGHTS_URL``). A checkpoint is converted straight into the model being
built, and that model's weights are cached as the Keras file for next time. The cache is Keras' own
(``$KERAS_HOME`` or ``~/.keras``), folder ``models/keras_preresnet``.
"""

import dataclasses
import hashlib
import os

import keras

from keras_preresnet import datasets, defaults, files
from keras_preresnet.pretrained import converter


@dataclasses.dataclass(frozen=True)
class WeightsRecord:
    """One published checkpoint: where it comes from, how its images were prepared, how well it does.

    Attributes:
        url, torch_file: the original Torch7 checkpoint and its file name in the cache.
        keras_file: the converted Keras weights file in the cache.
        source: who trained it, on what.
        dataset: key of ``datasets.DATASETS`` (classes, labels, normalisation).
        image_size, resize_size: the centre crop and the shorter side resized to before it.
        interpolation: how the shorter side is resized.
        mean, std: per-channel normalisation of RGB images scaled to [0, 1].
        top1_error, top5_error: validation error (%) of a single centre crop.
        sha256: SHA-256 of the converted Keras file where it is pinned, else None (see ``CHECKSUM_SUFFIX``).
    """

    url: str
    torch_file: str
    keras_file: str
    source: str
    dataset: str
    image_size: int
    resize_size: int
    interpolation: str
    mean: tuple
    std: tuple
    top1_error: float
    top5_error: float
    sha256: str = None

    @property
    def class_names(self):
        """The class names in output order (ImageNet: the names of the shipped WordNet index)."""
        return datasets.dataset_labels(self.dataset)

    def as_dict(self):
        """The record as plain data, with timm ``pretrained_cfg``-style input fields added."""
        return dict(
            dataclasses.asdict(self), num_classes=datasets.DATASETS[self.dataset].classes,
            input_size=(3, self.image_size, self.image_size), crop_pct=self.image_size / self.resize_size,
            class_names=self.class_names,
        )


_IMAGENET = datasets.DATASETS["imagenet2012"]

# Architectures with published ImageNet weights. fb.resnet.torch publishes no checksum for them.
PRETRAINED = {
    "preact_resnet200": WeightsRecord(
        url="https://d2j0dndfm35trm.cloudfront.net/resnet-200.t7",
        torch_file="resnet-200.t7",
        keras_file="preact_resnet200_fb_imagenet.weights.h5",
        source="fb.resnet.torch (Facebook AI Research), pre-activation ResNet-200 trained on ILSVRC-2012",
        dataset="imagenet2012",
        image_size=_IMAGENET.image_size,
        resize_size=_IMAGENET.eval_resize,
        interpolation="bicubic (Torch7 image.scale: corner-aligned Catmull-Rom, no antialiasing)",
        mean=defaults.IMAGENET_MEAN,
        std=defaults.IMAGENET_STD,
        top1_error=21.66,
        top5_error=5.79,
        # Not pinned: the real resnet-200.t7 has never been converted on this project's machines (they
        # cannot download it), and a converted file's bytes also hold Keras' auto-generated input-layer
        # name. The cached file is checked against the checksum written beside it when it was converted.
        sha256=None,
    ),
}
# The network `weights='imagenet'` means when none is named (the converter's command line).
DEFAULT_ARCHITECTURE = "preact_resnet200"
URL_ENV = "KERAS_PRERESNET_WEIGHTS_URL"
CACHE_SUBDIR = os.path.join("models", "keras_preresnet")


# The SHA-256 of a converted file is written beside it (``<file>.sha256``, the sha256sum format).
CHECKSUM_SUFFIX = ".sha256"


class WeightsUnavailableError(OSError):
    """The pretrained checkpoint is neither cached nor downloadable."""


class ChecksumError(ValueError):
    """A converted weights file is not the file that was converted."""


def pretrained_cfg(architecture=DEFAULT_ARCHITECTURE):
    """The record of ``architecture``'s published weights as a dict (as timm's ``pretrained_cfg``)."""
    return dict(_entry(architecture).as_dict(), architecture=architecture)


def file_sha256(path):
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path):
    """Writes ``path``'s SHA-256 beside it (``<path>.sha256``); returns it."""
    checksum = file_sha256(path)
    files.write_bytes(path + CHECKSUM_SUFFIX, f"{checksum}  {os.path.basename(path)}\n".encode("utf-8"))
    return checksum


def verify_checksum(path, architecture):
    """Checks a cached converted file against its record's pinned SHA-256 and the one written when it
    was converted; a mismatch is a ``ChecksumError`` that says how to convert it again. A file without
    a written checksum (copied into the cache by hand) is trusted from then on."""
    entry = _entry(architecture)
    actual = file_sha256(path)
    sidecar = path + CHECKSUM_SUFFIX
    written = None
    if os.path.exists(sidecar):
        with open(sidecar, encoding="utf-8") as f:
            words = f.read().split()
        written = words[0] if words else None
    for source, wanted in (("the weights record", entry.sha256), (os.path.basename(sidecar), written)):
        if wanted is not None and wanted != actual:
            raise ChecksumError(
                f"The converted weights {path} have SHA-256 {actual}, but {source} says {wanted}: the file is "
                f"damaged or was replaced. Delete it and {os.path.basename(sidecar)}; the next "
                f"weights='imagenet' converts the Torch7 checkpoint again, or convert by hand: "
                f"python -m keras_preresnet.convert {entry.torch_file} {path}"
            )
    if written is None:
        write_checksum(path)
    return actual


def _keras_home():
    return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def cache_dir():
    """Where pretrained files live: ``$KERAS_HOME/models/keras_preresnet`` (Keras' cache rule)."""
    return os.path.join(_keras_home(), CACHE_SUBDIR)


def _entry(architecture):
    if architecture not in PRETRAINED:
        raise ValueError(
            f"No ImageNet weights are published for {architecture!r}; they exist for {sorted(PRETRAINED)}."
        )
    return PRETRAINED[architecture]


def _download(url, path):
    """Fetches ``url`` into the cache file ``path`` with Keras' downloader, through ``files.publish``
    (a download killed half-way would otherwise stay in the cache as a truncated checkpoint)."""

    def fetch(temporary):
        keras.utils.get_file(fname=os.path.basename(temporary), origin=url, cache_dir=_keras_home(),
                             cache_subdir=CACHE_SUBDIR)

    return files.publish(path, fetch)


def torch_checkpoint(architecture=DEFAULT_ARCHITECTURE, url=None):
    """The original Torch7 checkpoint in the cache, downloaded first if it is not there."""
    entry = _entry(architecture)
    directory = cache_dir()
    path = os.path.join(directory, entry.torch_file)
    if os.path.exists(path):
        return path
    url = url or os.environ.get(URL_ENV) or entry.url
    os.makedirs(directory, exist_ok=True)
    try:
        return _download(url, path)
    except files.WriteError:  # downloaded, but the cache's disk refused it
        raise
    except Exception as error:  # get_file raises URLError, HTTPError, OSError, ValueError ...
        raise WeightsUnavailableError(
            f"Could not download the pretrained {architecture} checkpoint from {url} ({error}). Either put "
            f"{entry.torch_file} (from {entry.url} or a mirror) into {directory}, or pass "
            f"weights=<path to {entry.torch_file} or a converted .weights.h5>. A mirror URL can also be "
            f"given in ${URL_ENV}."
        ) from error


def _load_imagenet(model, architecture, url):
    """Loads the published weights of ``architecture`` into ``model`` from the cache, converting the
    Torch7 checkpoint (downloaded if needed) into ``model`` itself on a cache miss."""
    entry = _entry(architecture)
    keras_path = os.path.join(cache_dir(), entry.keras_file)
    if os.path.exists(keras_path):
        verify_checksum(keras_path, architecture)
        _load_keras_file(model, keras_path)
        return
    t7_path = torch_checkpoint(architecture, url)
    try:
        converter.convert(t7_path, model)
    except ValueError as error:
        raise ValueError(
            f"The cached checkpoint {t7_path} could not be converted: {error} Delete it to download it again."
        ) from error
    # Only a model holding the whole network (the classifier too) makes the cached file.
    if any(isinstance(layer, keras.layers.Dense) for layer in model.layers):
        files.save_weights(model, keras_path)
        write_checksum(keras_path)


def _load_keras_file(model, path):
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"Could not load the weights file {path!r} into model {model.name!r}: {error}. "
            "Check that the file was saved from the same architecture and arguments."
        ) from error


def load_into(model, weights, architecture=None, url=None):
    """Loads ``weights`` into ``model``: ``'imagenet'`` (the published weights of ``architecture``), a
    Torch7 ``.t7`` file or a Keras weights file.

    Weights files hold the full network; a model built with ``include_top=False``, any ``pooling`` or
    another input size takes everything but the classifier (weights do not depend on the input size).
    """
    if isinstance(weights, str) and weights == "imagenet":
        _load_imagenet(model, architecture, url)
    elif os.fspath(weights).lower().endswith(".t7"):
        converter.convert(os.fspath(weights), model)
    else:
        _load_keras_file(model, os.fspath(weights))
