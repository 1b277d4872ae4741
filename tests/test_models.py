"""Model builders: exact parameter counts, FLOPs, the keras.applications contract, very deep nets."""

import keras
import numpy as np
import pytest

import keras_preresnet as kp
from keras_preresnet import layers as L
from keras_preresnet.models import ARCHITECTURES, public_name


def trainable_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


# Exact values of the layouts (the papers' Table 1 and the released ResNet-200).
PARAMS = {
    "ResNet20": 269_722, "ResNet32": 464_154, "ResNet44": 658_586, "ResNet56": 853_018,
    "ResNet110": 1_727_962, "PreActResNet164": 1_703_258,
    "ResNet18": 11_689_512, "ResNet34": 21_797_672, "ResNet50": 25_557_032, "ResNet101": 44_549_160,
    "ResNet152": 60_192_808, "PreActResNet50": 25_557_160, "PreActResNet101": 44_549_288,
    "PreActResNet152": 60_192_936, "PreActResNet200": 64_673_960,
}
DEEP_PARAMS = {"ResNet1202": 19_421_274, "PreActResNet1001": 10_327_706}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_trainable_parameters_are_exact(name):
    assert trainable_params(getattr(kp, name)()) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(DEEP_PARAMS))
def test_very_deep_nets_build_with_exact_parameters(name):
    model = getattr(kp, name)()
    assert trainable_params(model) == DEEP_PARAMS[name]
    units = [l for l in model.layers if isinstance(l, L.ResidualUnit)]
    # scan_units='auto' loops these stages: a ScannedStage holds all units of a stage after its first.
    looped = sum(l.repeats for l in model.layers if isinstance(l, kp.ScannedStage))
    assert len(units) + looped == (200 * 3 if name == "ResNet1202" else 111 * 3)


def test_cifar100_heads():
    assert trainable_params(kp.PreActResNet164(classes=100)) == 1_726_388


@pytest.mark.parametrize("name, paper_gflops", [("ResNet18", 1.8), ("ResNet34", 3.6), ("ResNet50", 3.8),
                                                ("ResNet101", 7.6), ("ResNet152", 11.3)])
def test_flops_match_resnet_paper_table1(name, paper_gflops):
    flops = kp.count_flops(getattr(kp, name)()) / 1e9
    assert abs(flops - paper_gflops) / paper_gflops < 0.03, flops


def test_flops_of_the_released_resnet200_layout_match_timm():
    assert abs(kp.count_flops(kp.PreActResNet200()) / 1e9 - 15.0) < 0.05


@pytest.mark.parametrize("shortcut", ["exclusive_gating", "shortcut_only_gating", "conv1x1"])
def test_flops_count_the_shortcut_convolutions(shortcut):
    """Fig. 2 shortcuts with a 1x1 convolution add its multiply-adds (CIFAR ResNet-20, 3 units per stage)."""
    plain = kp.count_flops(kp.build_resnet(20, unit="original", projection="B"))
    extra = kp.count_flops(kp.build_resnet(20, unit="original", shortcut=shortcut, projection="B")) - plain
    if "gating" in shortcut:
        assert extra == 3 * (32 * 32 * 16 * 16 + 16 * 16 * 32 * 32 + 8 * 8 * 64 * 64)
    else:  # 1x1 convs on all 9 units, less the two option-B projections they replace
        assert extra == 3 * 32 * 32 * 16 * 16 + 2 * 16 * 16 * 32 * 32 + 2 * 8 * 8 * 64 * 64


def test_flops_need_a_fixed_input_size():
    with pytest.raises(ValueError, match="fixed input size"):
        kp.count_flops(kp.ResNet18(include_top=False))


@pytest.mark.parametrize("wrong", ["ResNet50", kp.ResNet50, None])
def test_flops_of_something_other_than_a_model_is_a_one_line_error(wrong):
    with pytest.raises(TypeError, match=r"^count_flops takes a built Keras model, e\.g\. count_flops\(") as error:
        kp.count_flops(wrong)
    assert "\n" not in str(error.value)


def test_every_named_architecture_has_a_public_builder():
    for key in ARCHITECTURES:
        builder = getattr(kp, public_name(key))
        assert builder.__name__ == public_name(key)


@pytest.mark.parametrize("depth, form, blocks", [(20, None, (3, 3, 3)), (164, None, (18, 18, 18)),
                                                 (110, "bottleneck", (12, 12, 12)), (110, "one_layer", (36, 36, 36)),
                                                 (1001, None, (111, 111, 111)), (1202, None, (200, 200, 200))])
def test_cifar_depth_decides_units_per_stage(depth, form, blocks):
    assert kp.models.stage_plan(depth, "cifar", form)[1] == blocks


def test_bad_depths_are_rejected():
    with pytest.raises(ValueError, match="6n\\+2"):
        kp.build_resnet(21, unit="original")
    with pytest.raises(ValueError, match="ImageNet ResNets exist for depths"):
        kp.build_resnet(21, layout="imagenet")


# -- the keras.applications contract ----------------------------------------------------------------


def test_include_top_false_and_pooling():
    features = kp.ResNet20(include_top=False)
    assert features.output_shape == (None, None, None, 64)
    pooled = kp.ResNet20(include_top=False, pooling="avg", input_shape=(40, 40, 3))
    assert pooled.output_shape == (None, 64)
    assert kp.ResNet20(include_top=False, pooling="max").output_shape == (None, 64)


def test_classes_and_classifier_activation():
    model = kp.ResNet20(classes=7, classifier_activation=None)
    out = keras.ops.convert_to_numpy(model(np.zeros((2, 32, 32, 3), "float32")))
    assert out.shape == (2, 7)
    assert not np.allclose(out.sum(axis=1), 1.0)
    probs = keras.ops.convert_to_numpy(kp.ResNet20()(np.ones((2, 32, 32, 3), "float32")))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_input_tensor_is_used():
    inputs = keras.Input((48, 48, 3))
    model = kp.PreActResNet110(input_tensor=inputs, include_top=False, pooling="avg")
    assert model.inputs[0] is inputs
    assert model.output_shape == (None, 64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weights="no/such/file.weights.h5"), "`weights` must be None, 'imagenet' or the path"),
    (dict(weights="imagenet"), "No ImageNet weights are published for resnet20"),
    (dict(input_shape=(4, 4, 3)), "at least 8x8"),
    (dict(input_shape=(32, 32)), "input_shape"),
    (dict(pooling="sum"), "pooling"),
    (dict(classes=0), "classes"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kp.ResNet20(**kwargs)


@pytest.mark.parametrize("args, kwargs, message", [
    (("20",), {}, "`depth` must be an integer (the number of weighted layers); received depth='20'."),
    ((None,), {}, "`depth` must be an integer (the number of weighted layers); received depth=None."),
    ((20,), dict(input_shape=32), "`input_shape` must be a tuple (height, width, channels) of positive integers or None; received input_shape=32."),
    ((20,), dict(input_shape="abc"), "received input_shape='abc'."),
    ((20,), dict(input_shape=(32, 32, "3")), "received input_shape=(32, 32, '3')."),
    ((20, "full_preactivation", "constant_scaling", [0.5]), {},
     "`shortcut_options` must be a dict of the 'constant_scaling' shortcut's arguments (shortcut_scale, residual_scale); received shortcut_options=[0.5]."),
    ((20,), dict(shortcut="exclusive_gating", shortcut_options={"bias": -6}), "(gate_bias); received shortcut_options={'bias': -6}."),
    ((20,), dict(include_top="no"), "`include_top` must be True or False; received include_top='no'."),
    ((20,), dict(classes=True), "`classes` must be a positive integer; received classes=True."),
    ((18,), dict(layout="imagenet", units_per_stage=2),
     "`units_per_stage` must be 4 positive integers for a imagenet ResNet; received units_per_stage=(2,)."),
])
def test_builder_names_the_bad_argument_and_what_it_accepts(args, kwargs, message):
    """Checked at entry like keras.applications: a ValueError naming the argument, never a TypeError from inside."""
    with pytest.raises(ValueError) as info:
        kp.build_resnet(*args, **kwargs)
    assert message in str(info.value)


def test_imagenet_weights_require_1000_classes_and_softmax(monkeypatch):
    from keras_preresnet.pretrained import weights as weights_lib

    monkeypatch.setitem(weights_lib.PRETRAINED, "preact_resnet200", weights_lib.PRETRAINED.get("preact_resnet200", {}))
    with pytest.raises(ValueError, match="`classes` must be 1000"):
        kp.PreActResNet200(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="`classifier_activation` must be None or 'softmax'"):
        kp.PreActResNet200(weights="imagenet", classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="3 input channels"):
        kp.PreActResNet200(weights="imagenet", include_top=False, input_shape=(224, 224, 1))


def test_layer_names_are_stable_and_readable():
    names = [layer.name for layer in kp.PreActResNet50().layers]
    assert names[1:6] == ["conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool"]
    assert "conv2_block1" in names and "conv5_block3" in names
    assert names[-4:] == ["post_bn", "post_relu", "avg_pool", "predictions"]
    unit = kp.PreActResNet50().get_layer("conv3_block1")
    assert [l.name for l in unit.branch_layers] == [
        "conv3_block1_preact_bn", "conv3_block1_1_conv", "conv3_block1_1_bn", "conv3_block1_2_conv",
        "conv3_block1_2_bn", "conv3_block1_3_conv"]
    assert unit.projection_conv.name == "conv3_block1_0_conv"


def test_released_resnet200_layout():
    """The released ResNet-200: stride on the 3x3, conv-BN projection of the raw input, BN-ReLU opening every unit."""
    model = kp.PreActResNet200()
    units = [l for l in model.layers if isinstance(l, L.FullPreActivationUnit)]
    assert [sum(1 for u in units if u.name.startswith(f"conv{s}_")) for s in (2, 3, 4, 5)] == [3, 24, 36, 3]
    for unit in units:
        assert unit.branch_ops_[:2] == ("bn", "relu") and unit.shortcut_from == "raw"
        if unit.name.endswith("block1"):
            assert unit.projection_conv is not None and unit.projection_norm is not None
    assert units[3].stride_position == "3x3" and units[3].strides == 2


def test_weights_file_round_trip(tmp_path):
    model = kp.ResNet20(classes=5)
    path = str(tmp_path / "r20.weights.h5")
    model.save_weights(path)
    restored = kp.ResNet20(classes=5, weights=path)
    x = np.random.RandomState(0).rand(2, 32, 32, 3).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)))


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = str(tmp_path / "r20.weights.h5")
    kp.ResNet20().save_weights(path)
    with pytest.raises(ValueError, match="Could not load the weights file"):
        kp.ResNet32(weights=path)


# -- very deep nets: .keras round trip, mixed precision ------------------------------------------------


@pytest.mark.parametrize("name", ["PreActResNet1001", pytest.param("ResNet1202", marks=pytest.mark.slow)])
def test_very_deep_nets_survive_keras_save_and_load(name, tmp_path):
    model = getattr(kp, name)(input_shape=(32, 32, 3))
    x = np.random.RandomState(0).rand(4, 32, 32, 3).astype("float32")
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    # An untrained 1000-layer net is only finite with batch statistics (training=True); the restored
    # model then sees the same weights and the same batch.
    expected = keras.ops.convert_to_numpy(model(x, training=True))
    got = keras.ops.convert_to_numpy(restored(x, training=True))
    assert np.isfinite(expected).all()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_logits_and_bn_statistics_in_float32(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = kp.build_resnet(14, unit="full_preactivation", classifier_activation=None)
        out = model(np.random.RandomState(0).rand(2, 32, 32, 3).astype("float32"), training=True)
        unit = model.get_layer("conv2_block1")
        assert unit.compute_dtype == policy.split("_")[1]
        assert unit.branch_layers[0].moving_mean.dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_classifier_starts_as_torchs_default_linear_with_zero_bias():
    """fb.resnet.torch keeps nn.Linear's uniform(+-1/sqrt(fan_in)) weight and zeroes the bias."""
    model = kp.build_resnet(8, unit="original", classes=100, input_shape=(32, 32, 3), classifier_activation=None)
    kernel, bias = (np.asarray(w) for w in model.get_layer("predictions").get_weights())
    bound = 1 / np.sqrt(kernel.shape[0])
    assert kernel.shape == (64, 100) and np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.95 * bound and abs(np.std(kernel) - bound / np.sqrt(3)) < 0.05 * bound / np.sqrt(3)
    assert not bias.any()


def test_kernel_regularizer_reaches_every_convolution_and_the_classifier():
    model = kp.build_resnet(8, unit="original", kernel_regularizer=keras.regularizers.L2(1e-4))
    model(np.zeros((1, 32, 32, 3), "float32"))
    kernels = [l for l in model._flatten_layers(include_self=False, recursive=True)
               if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(model.losses) == len(kernels) > 5


@pytest.mark.parametrize("kwargs", [
    dict(units_per_stage=(1, 1, 1, 1)), dict(shortcut="conv1x1"), dict(projection="C"), dict(use_bias=True),
])
def test_imagenet_weights_only_for_the_published_structure(kwargs):
    """Pretrained weights are found from the structure; a ResNet-200 that departs from it has none."""
    with pytest.raises(ValueError, match="No ImageNet weights are published for this structure"):
        kp.build_resnet(200, layout="imagenet", weights="imagenet", **kwargs)


def test_named_structure_is_found_without_its_name():
    assert kp.models.named_architecture(200, "full_preactivation", "imagenet") == "preact_resnet200"
    assert kp.models.named_architecture(164, "original", "cifar", "bottleneck") == "resnet164"
    assert kp.models.named_architecture(164, "original", "cifar", "basic") is None
    assert kp.models.named_architecture(200, "bn_after_addition", "imagenet") is None


def test_stochastic_depth_rates_grow_linearly_with_depth_to_the_given_rate():
    model = kp.build_resnet(20, input_shape=(32, 32, 3), drop_path_rate=0.3)
    rates = [layer.drop_path_rate for layer in model.layers if isinstance(layer, L.ResidualUnit)]
    # Huang et al. 2016, Eqn. 4: unit l of L drops with probability l / L * 0.3.
    np.testing.assert_allclose(rates, 0.3 * np.arange(1, 10) / 9)
    plain = kp.build_resnet(20, input_shape=(32, 32, 3))
    assert all(layer.drop_path is None for layer in plain.layers if isinstance(layer, L.ResidualUnit))
    # Drop-path adds no weights: weight files load either way, and at test time the nets are the same.
    plain.set_weights(model.get_weights())
    x = np.random.RandomState(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)),
                               keras.ops.convert_to_numpy(plain(x, training=False)), rtol=1e-6)
    with pytest.raises(ValueError, match="drop_path_rate"):
        kp.build_resnet(20, drop_path_rate=1.0)


# The ResNet paper's plain nets: its ResNets without shortcuts. On CIFAR (option A) and against ImageNet
# ResNets with option A shortcuts they have exactly the same parameters ("no extra parameter").
PLAIN_PARAMS = {
    "PlainNet20": 269_722, "PlainNet32": 464_154, "PlainNet44": 658_586, "PlainNet56": 853_018,
    "PlainNet110": 1_727_962, "PlainNet18": 11_515_688, "PlainNet34": 21_623_848,
}


@pytest.mark.parametrize("name", sorted(PLAIN_PARAMS))
def test_plain_nets_have_the_parameters_of_option_a_resnets(name):
    plain = getattr(kp, name)()
    spec = ARCHITECTURES[name.replace("PlainNet", "plain")]
    resnet = kp.build_resnet(spec["depth"], unit="original", layout=spec["layout"], projection="A")
    assert trainable_params(plain) == trainable_params(resnet) == PLAIN_PARAMS[name]
    assert [w.path for w in plain.weights] == [w.path.replace("resnet", "plain") for w in resnet.weights]
    units = [layer for layer in plain.layers if isinstance(layer, L.ResidualUnit)]
    assert units and all(isinstance(u, L.PlainUnit) and u.combine is None for u in units)


def test_imagenet_option_b_adds_the_projections_plain_nets_lack():
    # Three widening units, each with a 1x1 projection conv and its BN (ResNet paper, Table 3 option B).
    projections = 64 * 128 + 2 * 128 + 128 * 256 + 2 * 256 + 256 * 512 + 2 * 512
    assert trainable_params(kp.ResNet34()) - trainable_params(kp.PlainNet34()) == projections


def test_plain_unit_has_no_shortcut():
    x = np.random.RandomState(0).randn(2, 8, 8, 16).astype("float32")
    for cls, expected in ((L.PlainUnit, np.zeros_like(x)), (L.OriginalUnit, np.maximum(x, 0))):
        unit = cls(16, name="unit")
        unit.build(x.shape)
        norm = unit.branch_layers[-1]
        for variable in (norm.gamma, norm.beta):
            variable.assign(np.zeros(variable.shape, "float32"))
        # F(x) = 0: the plain unit outputs ReLU(0), the original unit ReLU(x + 0).
        np.testing.assert_allclose(keras.ops.convert_to_numpy(unit(x, training=False)), expected, atol=1e-6)


def test_plain_nets_refuse_shortcut_arguments():
    with pytest.raises(ValueError, match="A plain net has no shortcuts: leave `shortcut`"):
        kp.build_resnet(20, unit="plain", shortcut="conv1x1")
    with pytest.raises(ValueError, match="projection='B'"):
        kp.build_resnet(34, unit="plain", layout="imagenet", projection="B")


@pytest.mark.parametrize("block", ["conv2_block1", "conv3_block1"])
def test_cifar_preact_basic_first_unit_shortcut_carries_the_preactivated_input(block):
    """preresnet.lua's 'both_preact': a stage's first unit applies BN-ReLU before the split. With the
    branch's last convolution zeroed, the unit's output is its (option A) shortcut alone: the inference-mode
    BN-ReLU of the input, subsampled and zero-padded, never the raw (signed) input."""
    model = kp.build_resnet(20, unit="full_preactivation", layout="cifar", classes=10)
    unit = model.get_layer(block)
    assert unit.shortcut_from == "preactivated"
    assert model.get_layer(block.replace("block1", "block2")).shortcut_from == "raw"
    last_conv = unit.branch_layers[-1]
    last_conv.kernel.assign(np.zeros(last_conv.kernel.shape, "float32"))
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 16)).astype("float32")  # stages 1 and 2 take 16 channels
    y = np.asarray(unit(x, training=False))
    s = unit.strides
    expected = np.maximum(x[:, ::s, ::s, :], 0) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(y[..., : x.shape[-1]], expected, atol=1e-5)
    np.testing.assert_array_equal(y[..., x.shape[-1]:], 0)
