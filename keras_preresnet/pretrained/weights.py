"""Pretrained weights: the table of published checkpoints and loading into a built model.

``weights='imagenet'`` resolves, in this order: the converted Keras file in the cache; the original
Torch7 checkpoint in the cache (converted once, then cached); a download of that checkpoint from its
published URL (or a mirror: ``url=`` / ``$KERAS_PRERESNET_WEIGHTS_URL``). The cache is Keras' own
(``$KERAS_HOME`` or ``~/.keras``), folder ``models/keras_preresnet``.
"""

import hashlib
import os

import keras

# Architectures with published ImageNet weights. fb.resnet.torch publishes no checksum for them.
PRETRAINED = {
    "preact_resnet200": dict(
        url="https://d2j0dndfm35trm.cloudfront.net/resnet-200.t7",
        torch_file="resnet-200.t7",
        keras_file="preact_resnet200_fb_imagenet.weights.h5",
        source="fb.resnet.torch (Facebook AI Research), pre-activation ResNet-200 trained on ILSVRC-2012",
        # ILSVRC-2012 validation error %, single 224x224 centre crop of the 256-resized image.
        top1_error=21.66,
        top5_error=5.79,
        # SHA-256 of the converted Keras file where it is pinned. None: the real resnet-200.t7 has not
        # been converted on this project's machines (they cannot download it); the cached file is
        # checked against the checksum written beside it when it was converted.
        sha256=None,
    ),
}
URL_ENV = "KERAS_PRERESNET_WEIGHTS_URL"
CACHE_SUBDIR = os.path.join("models", "keras_preresnet")


CHECKSUM_SUFFIX = ".sha256"


class WeightsUnavailableError(OSError):
    """The pretrained checkpoint is neither cached nor downloadable."""


class ChecksumError(ValueError):
    """A converted weights file is not the file that was converted."""


def file_sha256(path):
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path):
    """Writes ``path``'s SHA-256 beside it (``<path>.sha256``, the ``sha256sum`` format); returns it."""
    checksum = file_sha256(path)
    temporary = f"{path}{CHECKSUM_SUFFIX}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(f"{checksum}  {os.path.basename(path)}\n")
    os.replace(temporary, path + CHECKSUM_SUFFIX)
    return checksum


def verify_checksum(path, expected, architecture):
    """Checks a cached converted file against the pinned SHA-256 (``expected``) and the one written at
    conversion; a mismatch is a ``ChecksumError`` that says how to convert it again."""
    actual = file_sha256(path)
    sidecar = path + CHECKSUM_SUFFIX
    written = None
    if os.path.exists(sidecar):
        with open(sidecar, encoding="utf-8") as f:
            words = f.read().split()
        written = words[0] if words else None
    for source, wanted in (("the weights record", expected), (os.path.basename(sidecar), written)):
        if wanted is not None and wanted != actual:
            raise ChecksumError(
                f"The converted weights {path} have SHA-256 {actual}, but {source} says {wanted}: the file is "
                f"damaged or was replaced. Delete it (and {os.path.basename(sidecar)}); the next "
                f"weights='imagenet' converts the Torch7 checkpoint again, or convert by hand: python -m "
                f"keras_preresnet.convert {PRETRAINED[architecture]['torch_file']} {path}"
            )
    if written is None:
        # A file copied into the cache by hand: trusted from now on.
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


def _download(url, fname):
    """Fetches ``url`` into the cache as ``fname`` with Keras' downloader; returns the path."""
    return keras.utils.get_file(fname=fname, origin=url, cache_dir=_keras_home(), cache_subdir=CACHE_SUBDIR)


def torch_checkpoint(architecture="preact_resnet200", url=None):
    """The original Torch7 checkpoint in the cache, downloaded first if it is not there."""
    entry = _entry(architecture)
    directory = cache_dir()
    path = os.path.join(directory, entry["torch_file"])
    if os.path.exists(path):
        return path
    url = url or os.environ.get(URL_ENV) or entry["url"]
    os.makedirs(directory, exist_ok=True)
    try:
        return _download(url, entry["torch_file"])
    except Exception as error:  # get_file raises URLError, HTTPError, OSError, ValueError ...
        raise WeightsUnavailableError(
            f"Could not download the pretrained {architecture} checkpoint from {url} ({error}). Either put "
            f"{entry['torch_file']} (from {entry['url']} or a mirror) into {directory}, or pass "
            f"weights=<path to {entry['torch_file']} or a converted .weights.h5>. A mirror URL can also be "
            f"given in ${URL_ENV}."
        ) from error


def pretrained_weights(architecture="preact_resnet200", url=None):
    """The converted Keras weights file of ``architecture``, converting (and downloading) it once."""
    from keras_preresnet.pretrained import converter as convert

    entry = _entry(architecture)
    keras_path = os.path.join(cache_dir(), entry["keras_file"])
    if os.path.exists(keras_path):
        verify_checksum(keras_path, entry["sha256"], architecture)
        return keras_path
    t7_path = torch_checkpoint(architecture, url)
    try:
        path = convert.convert_file(t7_path, keras_path, architecture)
        write_checksum(path)
        verify_checksum(path, entry["sha256"], architecture)
        return path
    except ValueError as error:
        raise ValueError(
            f"The cached checkpoint {t7_path} could not be converted: {error} Delete it to download it again."
        ) from error


def load_into(model, weights, architecture=None, include_top=True, url=None):
    """Loads ``weights`` into ``model``: ``'imagenet'``, a Torch7 ``.t7`` file or a Keras weights file.

    Weights files hold the full network; a model built with ``include_top=False``, any ``pooling`` or
    another input size takes everything but the classifier (weights do not depend on the input size).
    """
    if isinstance(weights, str) and weights == "imagenet":
        path = pretrained_weights(architecture, url)
    else:
        path = os.fspath(weights)
    if path.lower().endswith(".t7"):
        from keras_preresnet.pretrained import converter as convert

        convert.convert(path, model)
        return
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"Could not load the weights file {path!r} into model {model.name!r}: {error}. "
            "Check that the file was saved from the same architecture and arguments."
        ) from error
