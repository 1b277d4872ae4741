"""preprocess_input / decode_predictions: the evaluation transforms of fb.resnet.torch (docs/pretrained.md)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet import datasets, defaults
from keras_preresnet.preprocessing import decode_predictions, imagenet_classes, preprocess_input


def torch_scale_cubic_1d(src, dst_len):
    """Plain transcription of Torch7 image.c ``scaleCubic_rowcol`` for one row (float64)."""
    src_len = len(src)
    if dst_len == src_len:
        return np.array(src, np.float64)
    dst = np.zeros(dst_len)
    scale = (src_len - 1) / (dst_len - 1)
    for di in range(dst_len - 1):
        si_f = di * scale
        si_i = int(si_f)
        si_f -= si_i
        p1, p2 = src[si_i], src[si_i + 1]
        p0 = src[si_i - 1] if si_i > 0 else 2 * p1 - p2
        p3 = src[si_i + 2] if si_i + 2 < src_len else 2 * p2 - p1
        a0 = p1
        a1 = -0.5 * p0 + 0.5 * p2
        a2 = p0 - 2.5 * p1 + 2 * p2 - 0.5 * p3
        a3 = -0.5 * p0 + 1.5 * p1 - 1.5 * p2 + 0.5 * p3
        dst[di] = a0 + si_f * (a1 + si_f * (a2 + a3 * si_f))
    dst[-1] = src[-1]
    return dst


def torch_scale_cubic(image, height, width):
    rows = np.stack([np.stack([torch_scale_cubic_1d(image[j, :, c], width) for j in range(image.shape[0])])
                     for c in range(image.shape[2])], axis=-1)
    return np.stack([np.stack([torch_scale_cubic_1d(rows[:, i, c], height) for i in range(width)], axis=1)
                     for c in range(image.shape[2])], axis=-1)


def test_class_index_is_the_sorted_wordnet_order():
    classes = imagenet_classes()
    wnids = [wnid for wnid, _ in classes]
    assert len(classes) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)
    assert classes[0] == ("n01440764", "tench")
    assert classes[999] == ("n15075141", "toilet tissue")


def test_resize_matches_torch_image_scale_bicubic():
    image = np.random.RandomState(0).uniform(0, 255, (9, 13, 3))
    # Shorter side 9 -> 16: width floor(13 / 9 * 16) = 23, as fb.resnet.torch's Scale computes it.
    out = preprocess_input(image, image_size=None, resize_size=16)
    expected = torch_scale_cubic(image, 16, 23)
    np.testing.assert_allclose(out, (expected / 255.0 - defaults.IMAGENET_MEAN) / defaults.IMAGENET_STD,
                               atol=1e-4)
    down = preprocess_input(image, image_size=None, resize_size=5)
    np.testing.assert_allclose(
        down, (torch_scale_cubic(image, 5, 7) / 255.0 - defaults.IMAGENET_MEAN) / defaults.IMAGENET_STD, atol=1e-4
    )


def test_shorter_side_resize_sizes():
    def size(h, w):
        return preprocess_input(np.zeros((h, w, 3), np.uint8), image_size=None).shape[:2]

    assert size(375, 500) == (256, 341)  # floor(500 / 375 * 256)
    assert size(500, 375) == (341, 256)
    assert size(256, 300) == (256, 300)  # shorter side already 256: unchanged
    assert size(32, 32) == (256, 256)


def test_centre_crop_offset_is_torch_ceil():
    # Shorter side already 256, so only the crop acts; column index encoded in the red channel.
    width = 301
    image = np.zeros((256, width, 3), np.float32)
    image[..., 0] = np.arange(width)[None, :]
    out = preprocess_input(image)
    first_column = out[0, 0, 0] * defaults.IMAGENET_STD[0] + defaults.IMAGENET_MEAN[0]
    assert out.shape == (224, 224, 3)
    assert round(float(first_column) * 255.0) == 39  # ceil((301 - 224) / 2)


def test_constant_image_gives_normalised_constant():
    out = preprocess_input(np.full((2, 40, 60, 3), 128, np.uint8))
    expected = (128 / 255.0 - np.array(defaults.IMAGENET_MEAN)) / np.array(defaults.IMAGENET_STD)
    assert out.dtype == np.float32 and out.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-5)


def test_uint8_and_float_inputs_agree_on_real_images(cifar_dir):
    images, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    batch = images[:3]
    np.testing.assert_allclose(preprocess_input(batch), preprocess_input(batch.astype(np.float32)), atol=1e-5)
    np.testing.assert_allclose(preprocess_input(batch)[1], preprocess_input(batch[1]), atol=1e-5)


def test_works_inside_a_tf_function_with_unknown_sizes(cifar_dir):
    images, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    fn = tf.function(
        lambda x: preprocess_input(x, image_size=64, resize_size=72),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)],
    )
    out = fn(tf.constant(images[:2]))
    assert isinstance(out, tf.Tensor) and out.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(out.numpy(), preprocess_input(images[:2], 64, 72), atol=1e-5)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((8, 8)), {}, r"\[height, width, 3\]"),
        (np.zeros((1, 8, 8, 4)), {}, r"received shape \(1, 8, 8, 4\)"),
        (np.zeros((8, 8, 3)), {"image_size": 300}, "cannot be larger"),
        (np.zeros((8, 8, 3)), {"image_size": 0}, "image_size"),
        (np.array([["a"]]), {}, "uint8 or float"),
    ],
)
def test_bad_inputs_are_refused(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        preprocess_input(images, **kwargs)


def test_crop_larger_than_unresized_image_is_refused():
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the 224x224 crop"):
        preprocess_input(np.zeros((100, 100, 3), np.uint8), resize_size=None)


def test_decode_predictions_orders_and_names():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, [3, 999, 0]] = [0.5, 0.3, 0.2]
    preds[1, 1] = 1.0
    decoded = decode_predictions(preds, top=3)
    assert [d[0] for d in decoded[0]] == ["n01491361", "n15075141", "n01440764"]
    assert decoded[0][1][1] == "toilet tissue" and decoded[0][0][2] == pytest.approx(0.5)
    assert decoded[1][0] == ("n01443537", "goldfish", 1.0)
    assert len(decode_predictions(tf.constant(preds))[1]) == 5


@pytest.mark.parametrize("preds, top", [(np.zeros((1000,)), 5), (np.zeros((2, 10)), 5), (np.zeros((1, 1000)), 0)])
def test_decode_predictions_refuses_bad_shapes(preds, top):
    with pytest.raises(ValueError, match="top|samples, 1000"):
        decode_predictions(preds, top=top)

