"""Pretrained weights: the table of published checkpoints and loading into a built model.

``weights='imagenet'`` resolves, in this order: the converted Keras file in the cache; the original
Torch7 checkpoint in the cache (converted once, then cached); a download of that checkpoint from its
published URL (or a mirror: ``url=`` / ``$KERAS_PRERESNET_WEIGHTS_URL``). The cache is Keras' own
(``$KERAS_HOME`` or ``~/.keras``), folder ``models/keras_preresnet``.
"""

import os

import keras

from keras_preresnet import files

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
    ),
}
URL_ENV = "KERAS_PRERESNET_WEIGHTS_URL"
CACHE_SUBDIR = os.path.join("models", "keras_preresnet")


class WeightsUnavailableError(OSError):
    """The pretrained checkpoint is neither cached nor downloadable."""


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
        return _download(url, path)
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
        return keras_path
    t7_path = torch_checkpoint(architecture, url)
    try:
        return convert.convert_file(t7_path, keras_path, architecture)
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
