"""Input preprocessing and prediction decoding of the released ImageNet ResNet-200 (docs/pretrained.md).

fb.resnet.torch evaluates its checkpoints on RGB images scaled to [0, 1]: the shorter side is resized
with bicubic interpolation, the centre is cropped, and every channel is normalised; the sizes, mean and
std are those of the checkpoint's record, ``weights.PRETRAINED['preact_resnet200']``. Classes are the
1000 WordNet ids in sorted order; the index ships with the package (``data/imagenet_class_index.json``).
"""

import functools
import json
import os

import numpy as np

from keras_preresnet.datasets import DATASETS
from keras_preresnet.pretrained.weights import DEFAULT_ARCHITECTURE, PRETRAINED

CLASS_INDEX_PATH = os.path.join(os.path.dirname(__file__), "data", "imagenet_class_index.json")
NUM_CLASSES = DATASETS["imagenet2012"].classes
_RELEASED = PRETRAINED[DEFAULT_ARCHITECTURE]


@functools.lru_cache(maxsize=None)
def imagenet_classes():
    """The 1000 ImageNet classes as ``((wnid, name), ...)`` in the model's output order (sorted wnids)."""
    with open(CLASS_INDEX_PATH, encoding="utf-8") as f:
        rows = json.load(f)
    return tuple((str(wnid), str(name)) for wnid, name in rows)


def _check_size(name, value, allow_none):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer{' or None' if allow_none else ''}; "
                         f"received {name}={value!r}.")


def _short_side_size(height, width, resize_size):
    """New (height, width) with the shorter side ``resize_size``, as fb.resnet.torch's ``Scale``."""
    import tensorflow as tf

    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    size = tf.constant(float(resize_size), tf.float64)
    # Scale computes (long / short) * size and image.scale truncates it; an image whose shorter side
    # already has that size is returned as it is.
    new_h = tf.where(w < h, tf.math.floor(h / w * size), size)
    new_w = tf.where(w < h, size, tf.math.floor(w / h * size))
    keep = tf.equal(tf.minimum(h, w), size)
    return (tf.cast(tf.where(keep, h, new_h), tf.int32), tf.cast(tf.where(keep, w, new_w), tf.int32))


def _torch_cubic_matrix(src_len, dst_len):
    """``[dst_len, src_len]`` weights of Torch7 ``image.scale(..., 'bicubic')`` along one axis.

    Torch's scaleCubic samples source position ``i * (src_len - 1) / (dst_len - 1)`` (corners
    aligned), interpolates with the Catmull-Rom cubic, extrapolates linearly past the borders
    (``p0 = 2 p1 - p2``) and copies the last pixel; it does not antialias.
    """
    import tensorflow as tf

    steps = tf.maximum(dst_len - 1, 1)
    scale = tf.cast(src_len - 1, tf.float32) / tf.cast(steps, tf.float32)
    s = tf.cast(tf.range(dst_len - 1), tf.float32) * scale
    i = tf.cast(s, tf.int32)  # truncation, as the C code's (long) cast
    t = s - tf.cast(i, tf.float32)
    c0 = -0.5 * t + t * t - 0.5 * t * t * t
    c1 = 1.0 - 2.5 * t * t + 1.5 * t * t * t
    c2 = 0.5 * t + 2.0 * t * t - 1.5 * t * t * t
    c3 = -0.5 * t * t + 0.5 * t * t * t
    first = tf.equal(i, 0)  # p0 = 2 p1 - p2
    last = i + 2 >= src_len  # p3 = 2 p2 - p1
    c1, c2 = c1 + tf.where(first, 2.0 * c0, 0.0), c2 - tf.where(first, c0, 0.0)
    c2, c1 = c2 + tf.where(last, 2.0 * c3, 0.0), c1 - tf.where(last, c3, 0.0)
    c0, c3 = tf.where(first, 0.0, c0), tf.where(last, 0.0, c3)

    def tap(offset, weight):
        index = tf.clip_by_value(i + offset, 0, src_len - 1)
        return tf.one_hot(index, src_len, dtype=tf.float32) * weight[:, tf.newaxis]

    rows = tap(-1, c0) + tap(0, c1) + tap(1, c2) + tap(2, c3)
    last_row = tf.one_hot([src_len - 1], src_len, dtype=tf.float32)
    return tf.concat([rows, last_row], axis=0)


def _torch_bicubic_resize(images, new_h, new_w):
    import tensorflow as tf

    shape = tf.shape(images)
    rows = _torch_cubic_matrix(shape[1], new_h)
    cols = _torch_cubic_matrix(shape[2], new_w)
    x = tf.einsum("nhwc,pw->nhpc", images, cols)
    return tf.einsum("nhpc,oh->nopc", x, rows)


def preprocess_input(images, image_size=_RELEASED.image_size, resize_size=_RELEASED.resize_size):
    """Prepares RGB images for the pretrained ResNet-200 exactly as its evaluation code did.

    Args:
        images: RGB images on the 0-255 scale (uint8 or float), one ``[H, W, 3]`` image or a batch
            ``[N, H, W, 3]`` of equally sized images; a numpy array or a TensorFlow tensor (also
            symbolic, inside ``tf.function``). Images of different sizes: call once per image.
        image_size: side of the centre crop (224 for the published accuracy; 320 for the paper's
            320x320 test), or None for no crop.
        resize_size: the shorter side is resized to this with Torch7 ``image.scale``'s bicubic
            interpolation (corner-aligned Catmull-Rom, no antialiasing, no clipping), or None to keep
            the size.

    Returns:
        float32 images ``[..., image_size, image_size, 3]`` normalised by the ImageNet mean and std;
        a numpy array for numpy input, a ``tf.Tensor`` for tensor input.
    """
    import tensorflow as tf

    _check_size("image_size", image_size, allow_none=True)
    _check_size("resize_size", resize_size, allow_none=True)
    if image_size is not None and resize_size is not None and image_size > resize_size:
        raise ValueError(
            f"The centre crop cannot be larger than the resized shorter side; received "
            f"image_size={image_size} and resize_size={resize_size}."
        )
    numpy_input = not tf.is_tensor(images)
    x = tf.convert_to_tensor(images)
    if x.dtype not in (tf.uint8, tf.float16, tf.float32, tf.float64, tf.int32, tf.int64, tf.bfloat16):
        raise ValueError(f"`images` must be uint8 or float on the 0-255 scale; received dtype {x.dtype.name}.")
    rank = x.shape.rank
    if rank not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(
            "`images` must be one RGB image [height, width, 3] or a batch [batch, height, width, 3]; "
            f"received shape {tuple(x.shape)}."
        )
    single = rank == 3
    if single:
        x = x[tf.newaxis]
    x = tf.cast(x, tf.float32)

    shape = tf.shape(x)
    if resize_size is not None:
        new_h, new_w = _short_side_size(shape[1], shape[2], resize_size)
        x = _torch_bicubic_resize(x, new_h, new_w)
        shape = tf.shape(x)
    if image_size is not None:
        checks = [
            tf.debugging.assert_greater_equal(
                tf.reduce_min(shape[1:3]), image_size,
                message=f"preprocess_input: images are smaller than the {image_size}x{image_size} crop",
            )
        ]
        with tf.control_dependencies(checks):
            # fb.resnet.torch's CenterCrop: offset ceil((side - size) / 2).
            top = (shape[1] - image_size + 1) // 2
            left = (shape[2] - image_size + 1) // 2
            x = x[:, top: top + image_size, left: left + image_size, :]
            x = tf.ensure_shape(x, [None, image_size, image_size, 3])

    mean = tf.constant(_RELEASED.mean, tf.float32)
    std = tf.constant(_RELEASED.std, tf.float32)
    x = (x / 255.0 - mean) / std
    if single:
        x = x[0]
    return x.numpy() if numpy_input and tf.executing_eagerly() else x


def decode_predictions(preds, top=5):
    """Decodes ImageNet class scores into ``[[(wnid, name, score), ...], ...]``, best first.

    Args:
        preds: scores of shape ``[batch, 1000]`` (probabilities or logits) as a numpy array or tensor.
        top: how many classes to return per image (1..1000).
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"`top` must be an integer from 1 to {NUM_CLASSES}; received top={top!r}.")
    scores = np.asarray(preds.numpy() if hasattr(preds, "numpy") else preds)
    if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES:
        raise ValueError(
            f"`decode_predictions` expects a batch of ImageNet scores of shape (samples, {NUM_CLASSES}); "
            f"received an array of shape {scores.shape}."
        )
    if not np.issubdtype(scores.dtype, np.number):
        raise ValueError(f"`preds` must hold numbers; received dtype {scores.dtype}.")
    classes = imagenet_classes()
    results = []
    for row in scores:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(classes[i][0], classes[i][1], float(row[i])) for i in best])
    return results
