"""preprocess_input / preprocess / decode_predictions: fb.resnet.torch's evaluation transforms
(docs/pretrained.md), on every backend and inside the model."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_preresnet as kp
from keras_preresnet import datasets, defaults, preprocessing
from keras_preresnet.preprocessing import (
    ImagePreprocessing,
    decode_predictions,
    imagenet_classes,
    preprocess,
    preprocess_input,
)


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
    with pytest.raises(ValueError, match=r"100x100 after resizing\) are smaller than the 224x224"):
        preprocess_input(np.zeros((100, 100, 3), np.uint8), resize_size=None)
    # Sizes known only at run time: refused when the graph runs.
    fn = tf.function(lambda x: preprocess_input(x, resize_size=None),
                     input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the 224x224 crop"):
        fn(tf.zeros([100, 100, 3], tf.uint8))


BACKEND_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from keras_preresnet import datasets
    from keras_preresnet.preprocessing import preprocess, preprocess_input
    images, _ = datasets.load_cifar(sys.argv[1], "cifar10", "test")
    wide = np.repeat(images[:2], 3, axis=2)  # 32x96: the long side is the width
    tall = np.repeat(images[2:4], 2, axis=1)
    np.savez(sys.argv[2],
             imagenet=preprocess_input(images[:3], image_size=48, resize_size=56),
             wide=preprocess_input(wide, image_size=None, resize_size=45),
             down=preprocess_input(tall, image_size=20, resize_size=20),
             cifar=preprocess(wide, "cifar10", 24))
""")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_backend_preprocesses_real_images_alike(backend, cifar_dir, tmp_path):
    if backend == keras.backend.backend():
        pytest.skip("this process already runs that backend")
    out = tmp_path / "out.npz"
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", BACKEND_SCRIPT, str(cifar_dir), str(out)], env=env, check=True,
                   timeout=300)
    theirs = np.load(out)
    images, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    wide = np.repeat(images[:2], 3, axis=2)
    ours = dict(imagenet=preprocess_input(images[:3], image_size=48, resize_size=56),
                wide=preprocess_input(wide, image_size=None, resize_size=45),
                down=preprocess_input(np.repeat(images[2:4], 2, axis=1), image_size=20, resize_size=20),
                cifar=preprocess(wide, "cifar10", 24))
    for key, value in ours.items():
        assert theirs[key].shape == value.shape, key
        # Measured: at most 1.2e-6 apart (float32 summation order), about 1e-5 of a grey level.
        np.testing.assert_allclose(theirs[key], value, atol=1e-5, err_msg=key)


def test_cifar_preprocessing_normalises_and_resizes(cifar_dir):
    images, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    expected = (images[:2].astype(np.float32) - defaults.CIFAR10_MEAN) / defaults.CIFAR10_STD
    np.testing.assert_allclose(preprocess(images[:2], "cifar10"), expected, atol=1e-5)
    hundred = preprocess(images[0], "cifar100", 32)
    np.testing.assert_allclose(hundred, (images[0] - np.float32(defaults.CIFAR100_MEAN)) / defaults.CIFAR100_STD,
                               atol=1e-5)
    flat = preprocess(np.full((50, 70, 3), 90, np.uint8), "cifar10", 32)  # resizing keeps a flat colour
    np.testing.assert_allclose(flat, np.broadcast_to((90 - np.float32(defaults.CIFAR10_MEAN)) / defaults.CIFAR10_STD,
                                                     (32, 32, 3)), atol=1e-5)
    assert preprocess(images[:2], "imagenet", 64).shape == (2, 64, 64, 3)
    with pytest.raises(ValueError, match="`preprocessing` must be one of"):
        preprocess(images[:2], "svhn")


def test_model_with_preprocessing_takes_raw_images_of_any_size(cifar_dir, tmp_path):
    images, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    raw = np.repeat(images[:2], 2, axis=2)  # 32x64
    model = kp.build_resnet(8, include_preprocessing=True)
    plain = kp.build_resnet(8)
    plain.set_weights(model.get_weights())
    assert model.input_shape == (None, None, None, 3)
    np.testing.assert_allclose(model.predict(raw, verbose=0),
                               plain.predict(preprocess(raw, "cifar10", 32), verbose=0), atol=1e-5)
    # Weights files are those of the plain model; the whole model round-trips through .keras.
    weights = str(tmp_path / "plain.weights.h5")
    plain.save_weights(weights)
    loaded = kp.build_resnet(8, include_preprocessing=True, weights=weights)
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), model.predict(raw, verbose=0), atol=1e-6)
    # ... and the other way round (the pretrained cache may be written from a model with preprocessing).
    model.save_weights(tmp_path / "with.weights.h5")
    back = kp.build_resnet(8, weights=str(tmp_path / "with.weights.h5"))
    np.testing.assert_allclose(back.predict(preprocess(raw, "cifar10", 32), verbose=0),
                               model.predict(raw, verbose=0), atol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(raw, verbose=0), model.predict(raw, verbose=0), atol=1e-6)


def test_imagenet_model_with_preprocessing_crops_to_its_input_shape(cifar_dir):
    images, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    model = kp.build_resnet(18, layout="imagenet", units_per_stage=(1, 1, 1, 1), include_preprocessing=True,
                            input_shape=(48, 48, 3), include_top=False, pooling="avg")
    plain = kp.build_resnet(18, layout="imagenet", units_per_stage=(1, 1, 1, 1), input_shape=(48, 48, 3),
                            include_top=False, pooling="avg")
    plain.set_weights(model.get_weights())
    layer = model.get_layer("preprocessing")
    assert isinstance(layer, ImagePreprocessing) and (layer.preprocessing, layer.image_size) == ("imagenet", 48)
    np.testing.assert_allclose(model.predict(images[:2], verbose=0),
                               plain.predict(preprocess_input(images[:2], 48, 55), verbose=0), atol=1e-5)


@pytest.mark.parametrize("option, shape, message", [
    ("svhn", None, "include_preprocessing` must be True, False or one of"),
    (True, (32, 40, 3), "square RGB input"),
])
def test_bad_preprocessing_options_are_refused(option, shape, message):
    with pytest.raises(ValueError, match=message):
        kp.build_resnet(8, include_preprocessing=option, input_shape=shape)


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


def test_crop_box_is_the_centre_crop_in_original_pixels():
    # 300x400: shorter side 300 -> 256 for a 224 crop, so the crop covers 224 * 300 / 256 = 262.5 pixels.
    assert preprocessing.crop_box(300, 400, "imagenet", 224) == (19, 69, 262, 262)
    assert preprocessing.crop_box(40, 60, "cifar10", 32) == (0, 0, 40, 60)
