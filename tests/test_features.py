"""Feature pyramids: keras-hub's pyramid_outputs and timm's features_only / out_indices / feature_info,
the tapped tensors of pre-activation nets, and a segmentation head that learns on real CIFAR images."""

import keras
import numpy as np
import pytest

import keras_preresnet as kp
from keras_preresnet import features
from keras_preresnet import layers as L
from keras_preresnet.models import ARCHITECTURES, LAYOUTS
from model_testing import randomize_batchnorm
from support import to_numpy

# Per layout: the stem's and the stages' strides, and the P-levels of the stages.
REDUCTIONS = {"imagenet": [2, 4, 8, 16, 32], "cifar": [1, 1, 2, 4]}
LEVELS = {"imagenet": ["P2", "P3", "P4", "P5"], "cifar": ["P0", "P1", "P2"]}



def _small(architecture, **kwargs):
    """The named net with one unit per stage (same stem, widths, unit order and form)."""
    stages = len(LAYOUTS[ARCHITECTURES[architecture]["layout"]]["widths"])
    return kp.build_named(architecture, include_top=False, input_shape=(None, None, 3),
                          units_per_stage=(1,) * stages, **kwargs)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_gives_its_levels_with_channels_and_strides(architecture):
    spec = ARCHITECTURES[architecture]
    model = _small(architecture)
    info = features.feature_info(model)
    assert [f["reduction"] for f in info] == REDUCTIONS[spec["layout"]]
    assert [f["level"] for f in info] == ["stem"] + LEVELS[spec["layout"]]
    expansion = 4 if model.get_layer(info[1]["module"].split("/")[0]).form == "bottleneck" else 1
    widths = LAYOUTS[spec["layout"]]["widths"]
    stem_width = 64 if spec["layout"] == "imagenet" else 16
    assert [f["num_chs"] for f in info] == [stem_width] + [w * expansion for w in widths]
    # Any input size: each level is the input divided by its stride (rounded up).
    size = (64, 96) if spec["layout"] == "imagenet" else (32, 40)
    pyramid = keras.Model(model.input, features.pyramid_outputs(model))
    outputs = pyramid(np.zeros((1, *size, 3), np.float32))
    assert list(outputs) == LEVELS[spec["layout"]]
    for f in info[1:]:
        expected = (1, -(-size[0] // f["reduction"]), -(-size[1] // f["reduction"]), f["num_chs"])
        assert tuple(outputs[f["level"]].shape) == expected


def _bn_relu(bn, x):
    gamma, beta, mean, variance = (to_numpy(w) for w in bn.weights)
    return np.maximum((x - mean) / np.sqrt(variance + bn.epsilon) * gamma + beta, 0)


def test_preactivation_levels_are_the_next_units_bn_relu_and_the_head_output():
    model = kp.build_resnet(18, layout="imagenet", include_top=False, input_shape=(None, None, 3),
                            units_per_stage=(1, 1, 1, 1))
    randomize_batchnorm(model, seed=2)
    x = np.random.RandomState(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    raw = [to_numpy(t) for t in features.feature_extractor(model, tap="raw")(x)]
    tapped = features.feature_extractor(model)
    normalized = [to_numpy(t) for t in tapped(x)]
    assert [f["module"] for f in tapped.feature_info] == [
        "conv1_relu", "conv3_block1/preactivation", "conv4_block1/preactivation", "conv5_block1/preactivation",
        "post_relu"]
    np.testing.assert_array_equal(normalized[0], raw[0])  # the stem is conv-BN-ReLU already
    for level, reader in ((1, "conv3_block1"), (2, "conv4_block1"), (3, "conv5_block1")):
        bn = model.get_layer(reader).branch_layers[0]
        np.testing.assert_allclose(normalized[level], _bn_relu(bn, raw[level]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(normalized[4], _bn_relu(model.get_layer("post_bn"), raw[4]), rtol=1e-4, atol=1e-4)
    # The head's output is the tensor the classifier pools.
    pooled = keras.Model(model.input, model.get_layer("post_relu").output)(x)
    np.testing.assert_allclose(normalized[4], to_numpy(pooled), rtol=1e-6)


def test_cifar_preactivation_stem_is_tapped_through_the_first_units_preactivation():
    model = _small("preact_resnet110")
    randomize_batchnorm(model, seed=3)
    x = np.random.RandomState(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    stem_raw = to_numpy(features.feature_extractor(model, out_indices=(0,), tap="raw")(x))
    stem = features.feature_extractor(model, out_indices=(0,))
    assert stem.feature_info[0]["module"] == "conv2_block1/preactivation"
    bn = model.get_layer("conv2_block1").branch_layers[0]
    np.testing.assert_allclose(to_numpy(stem(x)), _bn_relu(bn, stem_raw), rtol=1e-4, atol=1e-4)


def test_original_units_are_tapped_where_they_end():
    model = _small("resnet18")
    raw, normalized = (features.feature_info(model, tap) for tap in features.TAPS)
    assert raw == normalized
    assert [f["module"] for f in raw] == ["conv1_relu", "conv2_block1", "conv3_block1", "conv4_block1", "conv5_block1"]


def test_features_only_builder_follows_timm():
    model = kp.PreActResNet50(features_only=True, out_indices=(1, 2, 3, 4), input_shape=(None, None, 3),
                              units_per_stage=(1, 1, 1, 1))
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(256, 4), (512, 8), (1024, 16), (2048, 32)]
    outputs = model(np.zeros((1, 64, 64, 3), np.float32))
    assert [tuple(o.shape) for o in outputs] == [(1, 16, 16, 256), (1, 8, 8, 512), (1, 4, 4, 1024), (1, 2, 2, 2048)]
    assert not any(layer.name in ("avg_pool", "predictions") for layer in model.layers)
    last_two = kp.PreActResNet50(features_only=True, out_indices=(-2, -1), units_per_stage=(1, 1, 1, 1))
    assert [f["level"] for f in last_two.feature_info] == ["P4", "P5"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(features_only=True, pooling="avg"), "features_only model returns unpooled levels"),
    (dict(features_only=True, out_indices=(0, 4)), "`out_indices` must be indices of the 4 levels"),
    (dict(features_only=True, out_indices=()), "`out_indices` must be indices"),
    (dict(features_only=True, feature_tap="sum"), "`tap` must be one of"),
    (dict(out_indices=(1, 2)), "apply to features_only=True models"),
])
def test_bad_feature_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kp.ResNet20(**kwargs)


def test_a_model_of_other_builders_is_refused():
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs))
    with pytest.raises(ValueError, match="feature pyramids need a model of keras_preresnet's builders"):
        features.pyramid_outputs(other)


# -- as a backbone ------------------------------------------------------------------------------------


def _find_the_pasted_image(images, rng, count):
    """Real CIFAR images: a 2x-upscaled (blocky) image as background, another one's 24x24 centre pasted
    at a random place on the 4-pixel grid; the target is the pasted area's mask at stride 4."""
    canvas = np.zeros((count, 64, 64, 3), np.float32)
    mask = np.zeros((count, 16, 16, 1), np.float32)
    for i in range(count):
        canvas[i] = np.kron(images[rng.randint(len(images))].astype(np.float32), np.ones((2, 2, 1)))
        top, left = 4 * rng.randint(0, 11, size=2)
        canvas[i, top:top + 24, left:left + 24] = images[rng.randint(len(images))][4:28, 4:28]
        mask[i, top // 4:top // 4 + 6, left // 4:left // 4 + 6] = 1
    return (canvas - 127.5) / 64.0, mask


def test_an_fpn_head_on_the_pyramid_learns_to_segment_real_images(cifar_dir):
    from keras_preresnet.datasets import load_cifar

    rng = np.random.RandomState(0)
    train_x, train_y = _find_the_pasted_image(load_cifar(cifar_dir, "cifar10", "train")[0], rng, 1024)
    test_x, test_y = _find_the_pasted_image(load_cifar(cifar_dir, "cifar10", "test")[0], rng, 256)
    keras.utils.set_random_seed(0)
    backbone = kp.PreActResNet18(include_top=False, input_shape=(None, None, 3), units_per_stage=(1, 1, 1, 1))
    levels = features.pyramid_outputs(backbone)
    merged = None  # FPN top-down path (Lin et al. 2017): lateral 1x1 convolutions, upsample, add
    for level in ("P5", "P4", "P3", "P2"):
        lateral = keras.layers.Conv2D(32, 1, name=f"lateral_{level}")(levels[level])
        merged = lateral if merged is None else lateral + keras.layers.UpSampling2D(2)(merged)
    model = keras.Model(backbone.input, keras.layers.Conv2D(1, 3, padding="same", name="mask")(merged))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))

    def iou():
        predicted, truth = model.predict(test_x, verbose=0) > 0, test_y > 0.5
        return (predicted & truth).sum() / (predicted | truth).sum()

    before = iou()
    model.fit(train_x, train_y, batch_size=32, epochs=2, verbose=0)
    after = iou()
    # The pasted area is 14% of the image: an untrained head scores about that; measured after: 0.84.
    assert before < 0.3 and after > 0.6, (before, after)
