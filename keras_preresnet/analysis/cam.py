"""Grad-CAM heat maps over the last stage (Selvaraju et al., 2017, Eqs. 1-2).

Grad-CAM weights each channel ``k`` of a feature map ``A`` by the mean gradient of the class score,
``alpha_k = mean_ij dy_c / dA_ij^k``, and keeps ``ReLU(sum_k alpha_k A^k)``. Every network here ends in
global average pooling and one Dense layer on the last stage's (normalised, activated) feature map, so
``dy_c / dA_ij^k = W[k, c] / (H W)`` exactly and the map needs no automatic differentiation: it is the
same on every backend and for the softmax model (the gradient is taken of the pre-softmax score).
"""

import keras
import numpy as np

POOL_LAYER = "avg_pool"
CLASSIFIER_LAYER = "predictions"


def _parts(model):
    try:
        pool, classifier = model.get_layer(POOL_LAYER), model.get_layer(CLASSIFIER_LAYER)
    except ValueError:
        raise ValueError(
            f"Grad-CAM needs a classifier built with include_top=True (layers {POOL_LAYER!r} and "
            f"{CLASSIFIER_LAYER!r}); model {model.name!r} has none."
        ) from None
    return keras.Model(model.inputs, pool.input), classifier


def grad_cam(model, images, classes):
    """Grad-CAM maps of ``classes`` (one class index per image) over the model's last feature map.

    Args:
        model: a classifier of this package (``include_top=True``).
        images: a batch the model takes (preprocessed, or raw with ``include_preprocessing``).
        classes: ``[batch]`` class indices whose evidence to map.

    Returns:
        float32 ``[batch, h, w]`` maps at the last stage's resolution (stride 4 on CIFAR, 32 on
        ImageNet), ReLU'd and not normalised.
    """
    features_model, classifier = _parts(model)
    classes = np.asarray(classes, np.int64).reshape(-1)
    features = keras.ops.convert_to_numpy(features_model.predict(images, verbose=0)).astype(np.float32)
    if len(classes) != len(features):
        raise ValueError(f"`classes` needs one class per image: {len(features)} images, {len(classes)} classes.")
    kernel = keras.ops.convert_to_numpy(classifier.kernel).astype(np.float32)  # [channels, classes]
    if classes.min(initial=0) < 0 or classes.max(initial=0) >= kernel.shape[1]:
        raise ValueError(f"`classes` must lie in [0, {kernel.shape[1]}); received {classes.tolist()}.")
    height, width = features.shape[1:3]
    alpha = kernel[:, classes].T / (height * width)  # [batch, channels]
    return np.maximum(np.einsum("nhwk,nk->nhw", features, alpha), 0.0)


def _resize_map(cam, height, width):
    """Bilinear upsampling of one ``[h, w]`` map to ``[height, width]`` (numpy, centre-aligned)."""
    def axis(src, dst):
        position = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, src - 1)
        return low, high, position - low

    r0, r1, fr = axis(cam.shape[0], height)
    c0, c1, fc = axis(cam.shape[1], width)
    rows = cam[r0] * (1 - fr)[:, None] + cam[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def _jet(values):
    """The 'jet' colour map of ``values`` in [0, 1] -> uint8 RGB."""
    four = 4.0 * values[..., None]
    rgb = np.clip(np.minimum(four - np.array([1.5, 0.5, -0.5]), -four + np.array([4.5, 3.5, 2.5])), 0, 1)
    return (255 * rgb).astype(np.uint8)


def overlay(image, cam, box=None, opacity=0.5):
    """The heat map ``cam`` blended onto ``image`` (uint8 ``[H, W, 3]``) inside ``box``.

    ``box`` is ``(top, left, height, width)`` of the region the network saw (a centre crop), by default
    the whole image. The map is scaled to its maximum (all-zero maps stay blue).
    """
    image = np.asarray(image, np.uint8)
    top, left, height, width = box or (0, 0, image.shape[0], image.shape[1])
    cam = np.asarray(cam, np.float32)
    peak = cam.max()
    heat = _jet(_resize_map(cam / peak if peak > 0 else cam, height, width))
    out = image.astype(np.float32)
    region = out[top: top + height, left: left + width]
    region[...] = (1 - opacity) * region + opacity * heat[: region.shape[0], : region.shape[1]]
    return np.round(out).astype(np.uint8)


def peak(cam):
    """``(row, column)`` of the map's maximum."""
    return np.unravel_index(int(np.argmax(cam)), cam.shape)
