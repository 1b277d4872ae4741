"""Input preprocessing and prediction decoding, on every Keras backend or inside the model.

fb.resnet.torch evaluates the released ResNet-200 on RGB images scaled to [0, 1]: the shorter side is
resized with Torch7's bicubic ``image.scale``, the centre is cropped, and every channel is normalised;
the sizes, mean and std are those of the checkpoint's record, ``weights.PRETRAINED['preact_resnet200']``
(docs/pretrained.md). CIFAR nets see the image resized to the network's size and normalised with their
training set's mean and std on the 0-255 scale (``datasets.DATASETS``). Both are written in
``keras.ops``: the bicubic resize is two matrix products, so TensorFlow, JAX and PyTorch give the same
numbers. Classes of ImageNet are the 1000 WordNet ids in sorted order; the index ships with the package
(``data/imagenet_class_index.json``).
"""

import math

import keras
import numpy as np

from keras_preresnet.datasets import DATASETS, imagenet_classes
from keras_preresnet.pretrained.weights import DEFAULT_ARCHITECTURE, PRETRAINED

NUM_CLASSES = DATASETS["imagenet2012"].classes
_RELEASED = PRETRAINED[DEFAULT_ARCHITECTURE]

# How an RGB image on the 0-255 scale becomes network input, by training set (``dataset``: the key of
# ``DATASETS``): ``(x / scale - mean) / std`` per channel, after bringing the image to the network's
# size (``"torch_bicubic"``: shorter side to the dataset's ``eval_resize_for(size)`` with Torch7's
# bicubic, then the centre crop; ``"bilinear"``: antialiased bilinear resize straight to the size).
# ImageNet keeps the released checkpoint's [0, 1] arithmetic, so results match its evaluation bit for bit.
PREPROCESSING = {
    "imagenet": dict(dataset="imagenet2012", scale=255.0, mean=_RELEASED.mean, std=_RELEASED.std,
                     interpolation="torch_bicubic"),
    "cifar10": dict(dataset="cifar10", scale=1.0, mean=DATASETS["cifar10"].mean, std=DATASETS["cifar10"].std,
                    interpolation="bilinear"),
    "cifar100": dict(dataset="cifar100", scale=1.0, mean=DATASETS["cifar100"].mean,
                     std=DATASETS["cifar100"].std, interpolation="bilinear"),
}
_FLOAT_OR_INT = ("uint8", "int32", "int64", "float16", "bfloat16", "float32", "float64")



def default_preprocessing(layout, classes=None):
    """The preprocessing of a layout's training set: ``'imagenet'``, or ``'cifar10'``/``'cifar100'``."""
    if layout == "imagenet":
        return "imagenet"
    return "cifar100" if classes == 100 else "cifar10"


def _check_size(name, value, allow_none):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer{' or None' if allow_none else ''}; "
                         f"received {name}={value!r}.")


def _check_preprocessing(name):
    if name not in PREPROCESSING:
        raise ValueError(f"`preprocessing` must be one of {tuple(PREPROCESSING)}; received preprocessing={name!r}.")


def _resized_shape(height, width, resize_size):
    """New (height, width) with the shorter side ``resize_size``, as fb.resnet.torch's ``Scale``.

    Scale computes ``(long / short) * size`` in Lua's doubles and ``image.scale`` truncates it; an image
    whose shorter side already has that size is returned as it is.
    """
    if isinstance(height, int) and isinstance(width, int):
        if min(height, width) == resize_size:
            return height, width
        if width < height:
            return math.floor(height / width * resize_size), resize_size
        return resize_size, math.floor(width / height * resize_size)
    # Sizes unknown until run time exist only in TensorFlow graphs (tf.function, tf.data): the same
    # rule in float64 tensors.
    import tensorflow as tf

    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    size = tf.constant(float(resize_size), tf.float64)
    keep = tf.equal(tf.minimum(h, w), size)
    new_h = tf.where(keep, h, tf.where(w < h, tf.math.floor(h / w * size), size))
    new_w = tf.where(keep, w, tf.where(w < h, size, tf.math.floor(w / h * size)))
    return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def _torch_cubic_matrix(src_len, dst_len):
    """``[dst_len, src_len]`` weights of Torch7 ``image.scale(..., 'bicubic')`` along one axis.

    Torch's scaleCubic samples source position ``i * (src_len - 1) / (dst_len - 1)`` (corners
    aligned), interpolates with the Catmull-Rom cubic, extrapolates linearly past the borders
    (``p0 = 2 p1 - p2``) and copies the last pixel; it does not antialias. float32 throughout, so
    every backend computes the same weights.
    """
    ops = keras.ops
    steps = ops.maximum(dst_len - 1, 1)
    scale = ops.cast(src_len - 1, "float32") / ops.cast(steps, "float32")
    s = ops.cast(ops.arange(dst_len - 1), "float32") * scale
    i = ops.cast(s, "int32")  # truncation, as the C code's (long) cast
    t = s - ops.cast(i, "float32")
    c0 = -0.5 * t + t * t - 0.5 * t * t * t
    c1 = 1.0 - 2.5 * t * t + 1.5 * t * t * t
    c2 = 0.5 * t + 2.0 * t * t - 1.5 * t * t * t
    c3 = -0.5 * t * t + 0.5 * t * t * t
    first = ops.equal(i, 0)  # p0 = 2 p1 - p2
    last = ops.greater_equal(i + 2, src_len)  # p3 = 2 p2 - p1
    c1, c2 = c1 + ops.where(first, 2.0 * c0, 0.0), c2 - ops.where(first, c0, 0.0)
    c2, c1 = c2 + ops.where(last, 2.0 * c3, 0.0), c1 - ops.where(last, c3, 0.0)
    c0, c3 = ops.where(first, 0.0, c0), ops.where(last, 0.0, c3)

    def tap(offset, weight):
        index = ops.clip(i + offset, 0, src_len - 1)
        return ops.one_hot(index, src_len, dtype="float32") * ops.expand_dims(weight, 1)

    rows = tap(-1, c0) + tap(0, c1) + tap(1, c2) + tap(2, c3)
    last_row = ops.cast(ops.equal(ops.arange(src_len), src_len - 1), "float32")
    return ops.concatenate([rows, ops.expand_dims(last_row, 0)], axis=0)


def _torch_bicubic_resize(images, new_h, new_w):
    _, height, width, _ = keras.ops.shape(images)
    x = keras.ops.einsum("nhwc,pw->nhpc", images, _torch_cubic_matrix(width, new_w))
    return keras.ops.einsum("nhpc,oh->nopc", x, _torch_cubic_matrix(height, new_h))


def centre_crop_offsets(height, width, crop_height, crop_width=None):
    """``(top, left)`` of the centre crop (square unless ``crop_width``), fb.resnet.torch's CenterCrop:
    ``ceil((side - crop) / 2)``. Works on Python integers and on tensors."""
    crop_width = crop_height if crop_width is None else crop_width
    return (height - crop_height + 1) // 2, (width - crop_width + 1) // 2


def crop_box(height, width, preprocessing, image_size):
    """``(top, left, height, width)``: the part of a ``height`` x ``width`` image that ``preprocess``
    shows the network (``image_size`` the network's input side)."""
    _check_preprocessing(preprocessing)
    spec = PREPROCESSING[preprocessing]
    if spec["interpolation"] != "torch_bicubic":
        return 0, 0, height, width
    scale = DATASETS[spec["dataset"]].eval_resize_for(image_size) / min(height, width)
    side_h, side_w = min(height, round(image_size / scale)), min(width, round(image_size / scale))
    return (*centre_crop_offsets(height, width, side_h, side_w), side_h, side_w)


def _centre_crop(x, size):
    """fb.resnet.torch's CenterCrop: offset ``ceil((side - size) / 2)``."""
    _, height, width, channels = keras.ops.shape(x)
    if isinstance(height, int) and isinstance(width, int):
        if min(height, width) < size:
            raise ValueError(
                f"The images ({height}x{width} after resizing) are smaller than the {size}x{size} centre "
                "crop; resize them first (resize_size) or crop less (image_size)."
            )
    else:
        import tensorflow as tf

        check = tf.debugging.assert_greater_equal(
            tf.minimum(height, width), size,
            message=f"preprocess_input: images are smaller than the {size}x{size} crop",
        )
        with tf.control_dependencies([check]):
            x = tf.identity(x)
    top, left = centre_crop_offsets(height, width, size)
    # The reshape states the crop's static size where the slice bounds are tensors (TensorFlow graphs).
    return keras.ops.reshape(x[:, top: top + size, left: left + size, :], (-1, size, size, channels))


def _as_batch(images):
    """``(float32 batch, single, numpy_input)``; refuses anything but RGB on the 0-255 scale."""
    numpy_input = not keras.ops.is_tensor(images)
    dtype = np.asarray(images).dtype.name if numpy_input else keras.backend.standardize_dtype(images.dtype)
    if dtype not in _FLOAT_OR_INT:
        raise ValueError(f"`images` must be uint8 or float on the 0-255 scale; received dtype {dtype}.")
    x = keras.ops.convert_to_tensor(images)
    shape = tuple(x.shape)
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise ValueError(
            "`images` must be one RGB image [height, width, 3] or a batch [batch, height, width, 3]; "
            f"received shape {shape}."
        )
    single = len(shape) == 3
    x = keras.ops.cast(x, "float32")
    return (keras.ops.expand_dims(x, 0) if single else x), single, numpy_input


def _finish(x, single, numpy_input):
    x = x[0] if single else x
    return keras.ops.convert_to_numpy(x) if numpy_input else x


def _normalise(x, preprocessing):
    spec = PREPROCESSING[preprocessing]
    mean = keras.ops.convert_to_tensor(spec["mean"], "float32")
    std = keras.ops.convert_to_tensor(spec["std"], "float32")
    return (x / spec["scale"] - mean) / std


def _imagenet(x, image_size, resize_size):
    if resize_size is not None:
        _, height, width, _ = keras.ops.shape(x)
        x = _torch_bicubic_resize(x, *_resized_shape(height, width, resize_size))
    if image_size is not None:
        x = _centre_crop(x, image_size)
    return _normalise(x, "imagenet")


def preprocess_input(images, image_size=_RELEASED.image_size, resize_size=_RELEASED.resize_size):
    """Prepares RGB images for the pretrained ResNet-200 exactly as its evaluation code did.

    Args:
        images: RGB images on the 0-255 scale (uint8 or float), one ``[H, W, 3]`` image or a batch
            ``[N, H, W, 3]`` of equally sized images; a numpy array or a tensor of the Keras backend
            (TensorFlow tensors also symbolic, inside ``tf.function``). Images of different sizes:
            call once per image.
        image_size: side of the centre crop (224 for the published accuracy; 320 for the paper's
            320x320 test), or None for no crop.
        resize_size: the shorter side is resized to this with Torch7 ``image.scale``'s bicubic
            interpolation (corner-aligned Catmull-Rom, no antialiasing, no clipping), or None to keep
            the size.

    Returns:
        float32 images ``[..., image_size, image_size, 3]`` normalised by the ImageNet mean and std;
        a numpy array for numpy input, a backend tensor for tensor input.
    """
    _check_size("image_size", image_size, allow_none=True)
    _check_size("resize_size", resize_size, allow_none=True)
    if image_size is not None and resize_size is not None and image_size > resize_size:
        raise ValueError(
            f"The centre crop cannot be larger than the resized shorter side; received "
            f"image_size={image_size} and resize_size={resize_size}."
        )
    x, single, numpy_input = _as_batch(images)
    return _finish(_imagenet(x, image_size, resize_size), single, numpy_input)


def preprocess(images, preprocessing="imagenet", image_size=None):
    """Raw RGB images (0-255, any size) -> network input ``[..., image_size, image_size, 3]``.

    ``preprocessing`` names a training set of ``PREPROCESSING``. ``'imagenet'`` resizes the shorter
    side to ``round(image_size * 256 / 224)`` and crops the centre (``preprocess_input``);
    ``'cifar10'`` / ``'cifar100'`` resize the image to ``image_size`` (antialiased bilinear; an image of
    that size is left as it is) and normalise with the training set's statistics. ``image_size``
    defaults to the dataset's (224 for ImageNet, 32 for CIFAR).
    """
    _check_preprocessing(preprocessing)
    spec = PREPROCESSING[preprocessing]
    dataset = DATASETS[spec["dataset"]]
    image_size = dataset.image_size if image_size is None else image_size
    _check_size("image_size", image_size, allow_none=False)
    if spec["interpolation"] == "torch_bicubic":
        return preprocess_input(images, image_size, dataset.eval_resize_for(image_size))
    x, single, numpy_input = _as_batch(images)
    if tuple(x.shape[1:3]) != (image_size, image_size):
        x = keras.ops.image.resize(x, (image_size, image_size), interpolation="bilinear", antialias=True)
    return _finish(_normalise(x, preprocessing), single, numpy_input)


@keras.saving.register_keras_serializable(package="keras_preresnet")
class ImagePreprocessing(keras.layers.Layer):
    """The model's first layer with ``include_preprocessing``: raw RGB (0-255, any size) in,
    ``preprocess(images, preprocessing, image_size)`` out. Always computes in float32."""

    def __init__(self, preprocessing="imagenet", image_size=224, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        _check_preprocessing(preprocessing)
        _check_size("image_size", image_size, allow_none=False)
        self.preprocessing = preprocessing
        self.image_size = int(image_size)

    def call(self, inputs):
        return preprocess(inputs, self.preprocessing, self.image_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 3)

    def get_config(self):
        return {**super().get_config(), "preprocessing": self.preprocessing, "image_size": self.image_size}


def decode_predictions(preds, top=5):
    """Decodes ImageNet class scores into ``[[(wnid, name, score), ...], ...]``, best first.

    Args:
        preds: scores of shape ``[batch, 1000]`` (probabilities or logits) as a numpy array or tensor.
        top: how many classes to return per image (1..1000).
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"`top` must be an integer from 1 to {NUM_CLASSES}; received top={top!r}.")
    scores = np.asarray(keras.ops.convert_to_numpy(preds) if keras.ops.is_tensor(preds) else preds)
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
