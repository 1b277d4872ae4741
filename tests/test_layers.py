"""Residual-unit and shortcut layers: the orders of Fig. 4, the shortcuts of Fig. 2, options A/B/C."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_preresnet import layers as L
from model_testing import randomize_batchnorm
from support import to_numpy

UNIT_NAMES = sorted(L.UNITS)
RNG = np.random.RandomState(0)


def _x(shape=(2, 8, 8, 16), seed=0):
    return np.random.RandomState(seed).normal(size=shape).astype("float32")



# A unit without a shortcut (the plain unit) takes no shortcut type.
UNIT_SHORTCUTS = [(unit, shortcut) for unit in UNIT_NAMES for shortcut in sorted(L.SHORTCUTS)
                  if L.UNITS[unit].has_shortcut or shortcut == "identity"]


@pytest.mark.parametrize("unit, shortcut", UNIT_SHORTCUTS)
@pytest.mark.parametrize("form", L.FORMS)
def test_unit_config_round_trips_and_rebuilds_the_same_function(unit, form, shortcut):
    options = {"gate_bias": -3.0} if "gating" in shortcut else {}
    layer = L.UNITS[unit](8, strides=2, form=form, shortcut=shortcut, shortcut_options=options,
                          projection="B", name="conv3_block1")
    x = _x()
    y = layer(x, training=False)
    config = layer.get_config()
    clone = L.UNITS[unit].from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config
    np.testing.assert_allclose(to_numpy(clone(x, training=False)), to_numpy(y), rtol=1e-6, atol=1e-6)
    assert y.shape == (2, 4, 4, 32 if form == "bottleneck" else 8)


def _reference_basic(unit, x):
    """Fig. 4 written out with the unit's own sublayers, for a basic unit with identity shortcut."""
    conv1, conv2 = [l for l in unit.branch_layers if isinstance(l, L.TorchConv2D)]
    bns = [l for l in unit.branch_layers if isinstance(l, keras.layers.BatchNormalization)]
    relu = ops.relu

    def bn(i, t):
        return bns[i](t, training=False)

    name = unit.__class__.__name__
    if name == "OriginalUnit":
        return relu(x + bn(1, conv2(relu(bn(0, conv1(x))))))
    if name == "BNAfterAdditionUnit":
        return relu(unit.after_layers[0](x + conv2(relu(bn(0, conv1(x)))), training=False))
    if name == "ReLUBeforeAdditionUnit":
        return x + relu(bn(1, conv2(relu(bn(0, conv1(x))))))
    if name == "ReLUOnlyPreActivationUnit":
        return x + bn(1, conv2(relu(bn(0, conv1(relu(x))))))
    if name == "FullPreActivationUnit":
        return x + conv2(relu(bn(1, conv1(relu(bn(0, x))))))
    if name == "PlainUnit":
        return relu(bn(1, conv2(relu(bn(0, conv1(x))))))
    raise AssertionError(name)


@pytest.mark.parametrize("unit", UNIT_NAMES)
def test_unit_computes_its_fig4_activation_order(unit):
    layer = L.UNITS[unit](16, form="basic")
    x = _x()
    layer(x)
    randomize_batchnorm(layer)
    np.testing.assert_allclose(to_numpy(layer(x, training=False)), to_numpy(_reference_basic(layer, x)),
                               rtol=1e-5, atol=1e-5)


def test_unit_orders_differ_only_in_order_not_in_parameters():
    counts = {}
    for unit in UNIT_NAMES:
        layer = L.UNITS[unit](16, form="basic")
        layer(_x())
        counts[unit] = layer.count_params()
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("form, convs", [("basic", [(3, 8), (3, 8)]), ("bottleneck", [(1, 8), (3, 8), (1, 32)]),
                                         ("one_layer", [(3, 8)])])
def test_forms_have_the_papers_convolutions(form, convs):
    layer = L.FullPreActivationUnit(8, form=form)
    layer(_x())
    found = [(l.kernel_size[0], l.filters) for l in layer.branch_layers if isinstance(l, L.TorchConv2D)]
    assert found == convs


@pytest.mark.parametrize("position, strided", [("first", 0), ("3x3", 1)])
def test_stride_position_of_a_bottleneck(position, strided):
    layer = L.FullPreActivationUnit(8, strides=2, form="bottleneck", stride_position=position)
    layer(_x())
    strides = [l.strides[0] for l in layer.branch_layers if isinstance(l, L.TorchConv2D)]
    assert strides == [2 if i == strided else 1 for i in range(3)]


def test_option_a_subsamples_and_pads_zero_channels_without_parameters():
    layer = L.OriginalUnit(32, strides=2, projection="A")
    x = _x((2, 8, 8, 16))
    layer(x)
    assert layer.projection_conv is None
    shortcut = to_numpy(layer._match_dimensions(x, training=False))
    assert shortcut.shape == (2, 4, 4, 32)
    np.testing.assert_array_equal(shortcut[..., :16], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(shortcut[..., 16:], 0.0)
    branch_params = sum(l.count_params() for l in layer.branch_layers)
    assert layer.count_params() == branch_params


@pytest.mark.parametrize("projection, same_dims_projected", [("B", False), ("C", True)])
def test_option_b_projects_only_where_dimensions_change_and_c_everywhere(projection, same_dims_projected):
    widening = L.OriginalUnit(32, strides=2, projection=projection)
    widening(_x((2, 8, 8, 16)))
    same = L.OriginalUnit(16, projection=projection)
    same(_x((2, 8, 8, 16)))
    assert widening.projection_conv is not None and widening.projection_norm is not None
    assert (same.projection_conv is not None) == same_dims_projected


def test_option_a_cannot_narrow():
    with pytest.raises(ValueError, match="Option A shortcuts can only widen"):
        L.OriginalUnit(8, projection="A")(_x((2, 8, 8, 16)))


def test_preactivated_shortcut_projects_the_preactivated_input():
    layer = L.FullPreActivationUnit(16, strides=2, form="bottleneck", shortcut_from="preactivated",
                                    projection_bn=False)
    x = _x((2, 8, 8, 16))
    layer(x)
    randomize_batchnorm(layer)
    bn = layer.branch_layers[0]
    expected = layer.projection_conv(ops.relu(bn(x, training=False)))
    assert layer.projection_norm is None
    # With a zero residual branch the unit's output is its shortcut alone.
    last = [l for l in layer.branch_layers if isinstance(l, L.TorchConv2D)][-1]
    last.kernel.assign(np.zeros(last.kernel.shape, "float32"))
    np.testing.assert_allclose(to_numpy(layer(x, training=False)), to_numpy(expected), rtol=1e-5, atol=1e-5)


def test_original_unit_has_no_preactivation_to_share():
    with pytest.raises(ValueError, match="no pre-activation to share"):
        L.OriginalUnit(16, shortcut_from="preactivated")


@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=0), "filters"), (dict(filters=8, strides=3), "strides"),
    (dict(filters=8, form="wide"), "form"), (dict(filters=8, shortcut="gated"), "shortcut"),
    (dict(filters=8, projection="D"), "projection"), (dict(filters=8, stride_position="last"), "stride_position"),
    (dict(filters=8, drop_path_rate=1.0), "drop_path_rate"), (dict(filters=8, drop_path_rate=-0.1), "drop_path_rate"),
])
def test_bad_unit_arguments_are_rejected_with_the_argument_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.FullPreActivationUnit(**kwargs)


# -- Fig. 2 shortcut types ---------------------------------------------------------------------------


def _pair(seed=0):
    return _x((2, 4, 4, 8), seed), _x((2, 4, 4, 8), seed + 1)


def _built(cls, **kwargs):
    layer = cls(**kwargs)
    layer.build((None, 4, 4, 8))
    return layer


def test_identity_shortcut_adds():
    h, f = _pair()
    np.testing.assert_allclose(to_numpy(_built(L.IdentityShortcut)(h, f)), h + f, rtol=1e-6)


@pytest.mark.parametrize("lam, mu", [(0.5, 0.5), (0.5, 1.0), (0.0, 1.0)])
def test_constant_scaling_shortcut_scales_both_paths(lam, mu):
    h, f = _pair()
    layer = _built(L.ConstantScalingShortcut, shortcut_scale=lam, residual_scale=mu)
    np.testing.assert_allclose(to_numpy(layer(h, f)), lam * h + mu * f, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls, residual_gated", [(L.ExclusiveGatingShortcut, True),
                                                 (L.ShortcutOnlyGatingShortcut, False)])
def test_gating_shortcuts_use_a_sigmoid_gate_with_the_given_bias(cls, residual_gated):
    h, f = _pair()
    layer = _built(cls, gate_bias=-6.0)
    np.testing.assert_array_equal(to_numpy(layer.gate.bias), np.full(8, -6.0, "float32"))
    layer.gate.kernel.assign(np.zeros(layer.gate.kernel.shape, "float32"))
    g = 1.0 / (1.0 + np.exp(6.0))
    expected = (1 - g) * h + (g * f if residual_gated else f)
    np.testing.assert_allclose(to_numpy(layer(h, f)), expected, rtol=1e-5, atol=1e-6)
    # With a real 1x1 kernel the gate is a function of the shortcut input x, g(x) = sigmoid(W_g x + b_g)
    # (the Identity Mappings paper, Sec. 3.1), not of the residual F(x).
    kernel = np.random.RandomState(4).standard_normal(layer.gate.kernel.shape).astype("float32")
    layer.gate.kernel.assign(kernel)
    g = 1.0 / (1.0 + np.exp(-(h @ kernel[0, 0] - 6.0)))
    expected = (1 - g) * h + (g * f if residual_gated else f)
    np.testing.assert_allclose(to_numpy(layer(h, f)), expected, rtol=1e-4, atol=1e-5)


def test_conv1x1_shortcut_projects_the_raw_input():
    layer = L.Conv1x1Shortcut(filters=16, strides=2)
    layer.build((None, 8, 8, 8))
    x, f = _x((2, 8, 8, 8)), _x((2, 4, 4, 16), 3)
    np.testing.assert_allclose(to_numpy(layer(x, f)), to_numpy(layer.conv(x)) + f, rtol=1e-5, atol=1e-5)


def test_dropout_shortcut_drops_only_in_training():
    h, f = _pair()
    layer = _built(L.DropoutShortcut, rate=0.5)
    np.testing.assert_allclose(to_numpy(layer(h, f, training=False)), h + f, rtol=1e-6)
    kept = to_numpy(layer(h, f, training=True)) - f
    dropped = np.isclose(kept, 0.0, atol=1e-6)
    assert 0.3 < dropped.mean() < 0.7
    np.testing.assert_allclose(kept[~dropped], 2.0 * h[~dropped], rtol=1e-5)


# -- Stochastic depth (drop-path on the residual branch) -----------------------------------------------


def _unit_pair(rate, unit="full_preactivation"):
    """A unit with ``drop_path_rate=rate`` and the same unit without, sharing weights."""
    x = _x((2000, 4, 4, 8), seed=5)
    plain = L.UNITS[unit](8, name="conv2_block1")
    dropping = L.UNITS[unit](8, name="conv2_block1", drop_path_rate=rate)
    plain(x[:2]), dropping(x[:2])
    randomize_batchnorm(plain, seed=1)
    dropping.set_weights(plain.get_weights())
    return x, plain, dropping


def test_drop_path_rate_zero_is_the_plain_unit():
    x, plain, unit = _unit_pair(0.0)
    assert unit.drop_path is None and unit.get_weights() and len(unit.weights) == len(plain.weights)
    np.testing.assert_array_equal(to_numpy(unit(x, training=True)), to_numpy(plain(x, training=True)))


@pytest.mark.parametrize("unit", ["full_preactivation", "relu_before_addition"])
def test_drop_path_drops_whole_branches_at_the_rate_and_scales_the_kept_ones(unit):
    rate = 0.3
    x, plain, dropping = _unit_pair(rate, unit)
    # Both units add to the identity and do nothing after it; training-mode BN normalises with the batch's
    # statistics, the same for both. So each example's output is x (branch dropped) or x + F(x) / (1 - rate).
    residual = to_numpy(plain(x, training=True)) - x
    out = to_numpy(dropping(x, training=True))
    dropped = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    kept = np.array([np.allclose(o - xi, r / (1 - rate), rtol=1e-4, atol=1e-4) for o, xi, r in zip(out, x, residual)])
    assert np.all(kept ^ dropped)
    # 2000 examples: the dropped share is within 4 standard deviations (0.041) of the rate.
    assert abs(dropped.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / len(x))
    np.testing.assert_allclose(to_numpy(dropping(x, training=False)), to_numpy(plain(x, training=False)), rtol=1e-6)


def test_drop_path_never_touches_the_identity_path_unlike_the_dropout_shortcut():
    layer = L.DropPath(0.5)
    branch = np.ones((400, 2, 2, 3), "float32")
    out = to_numpy(layer(branch, training=True))
    # Per example all or nothing: the mask is one number per example, not per activation.
    per_example = out.reshape(len(out), -1)
    assert np.all((per_example == 0).all(1) | (per_example == 2.0).all(1))
    assert 0.35 < (per_example[:, 0] == 0).mean() < 0.65


# -- Torch padding ------------------------------------------------------------------------------------


def test_strided_conv_pads_symmetrically_like_torch():
    x = _x((1, 8, 8, 3))
    conv = L.TorchConv2D(4, 3, strides=2)
    y = to_numpy(conv(x))
    reference = keras.layers.Conv2D(4, 3, strides=2, padding="valid", use_bias=False)
    reference.build((None, 10, 10, 3))
    reference.set_weights(conv.get_weights())
    expected = to_numpy(reference(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    same = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)
    same.build((None, 8, 8, 3))
    same.set_weights(conv.get_weights())
    assert not np.allclose(to_numpy(same(x)), y), "Keras 'same' is asymmetric here; the two must differ"


def test_conv_initialisation_is_he_normal_over_fan_out():
    conv = L.TorchConv2D(256, 3)
    conv.build((None, 8, 8, 128))
    std = float(np.std(to_numpy(conv.kernel)))
    assert abs(std - np.sqrt(2.0 / (3 * 3 * 256))) < 0.05 * np.sqrt(2.0 / (3 * 3 * 256))


def test_a_new_activation_order_is_one_class():
    """A sixth order states its ops and joins UNITS; the builder, stem and head follow from the class."""
    from keras_preresnet import models

    @L._unit
    class BNOnlyPreActivationUnit(L.ResidualUnit):
        order = "test_bn_only_preactivation"
        each_conv = ("bn", "conv")
        last_conv = ("bn", "conv")
        stem_tail = ()
        head = ("bn",)

    try:
        model = models.build_resnet(8, unit="test_bn_only_preactivation", input_shape=(8, 8, 3))
        unit = model.get_layer("conv2_block1")
        assert unit.branch_ops_ == ("bn", "conv", "bn", "conv") and BNOnlyPreActivationUnit.preactivates()
        names = [layer.name for layer in model.layers]
        assert names[1:3] == ["conv1_conv", "conv2_block1"] and "post_bn" in names and "post_relu" not in names
        assert model(np.ones((1, 8, 8, 3), "float32")).shape == (1, 10)
    finally:
        del L.UNITS["test_bn_only_preactivation"]


def test_plain_unit_takes_no_shortcut_type_and_no_drop_path():
    with pytest.raises(ValueError, match="PlainUnit has no shortcut: leave `shortcut` and `shortcut_options`"):
        L.PlainUnit(16, shortcut="conv1x1")
    with pytest.raises(ValueError, match="PlainUnit has no shortcut to keep when its branch is dropped"):
        L.PlainUnit(16, drop_path_rate=0.1)


def _bn_pair(channels=5):
    ours = L.batch_norm("bn")
    keras_bn = keras.layers.BatchNormalization(epsilon=ours.epsilon, momentum=ours.momentum)
    for layer in (ours, keras_bn):
        layer.build((None, 6, 6, channels))
    rng = np.random.RandomState(0)
    values = [rng.rand(channels) + 0.5, rng.randn(channels), rng.randn(channels), rng.rand(channels) + 0.5]
    for layer in (ours, keras_bn):
        layer.set_weights([v.astype("float32") for v in values])
    return ours, keras_bn


def test_batch_norm_trains_as_keras_does_and_keeps_torchs_running_variance():
    torch = pytest.importorskip("torch")
    ours, keras_bn = _bn_pair()
    x = (np.random.RandomState(1).randn(4, 6, 6, 5) * 3 + 2).astype("float32")
    np.testing.assert_allclose(to_numpy(ours(x, training=False)), to_numpy(keras_bn(x, training=False)), atol=2e-5)
    np.testing.assert_allclose(to_numpy(ours(x, training=True)), to_numpy(keras_bn(x, training=True)), atol=2e-5)
    reference = torch.nn.BatchNorm2d(5, eps=1e-5, momentum=0.1)
    start = _bn_pair()[0].get_weights()
    reference.running_mean.data, reference.running_var.data = (torch.from_numpy(v) for v in start[2:])
    reference.train()(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(to_numpy(ours.moving_mean), reference.running_mean.numpy(), rtol=1e-5)
    moving_variance = to_numpy(ours.moving_variance)
    if keras.backend.backend() == "tensorflow":  # the fused kernel: Torch's unbiased running variance
        np.testing.assert_allclose(moving_variance, reference.running_var.numpy(), rtol=1e-5)
    else:  # Keras' layer: the biased one
        np.testing.assert_allclose(moving_variance, to_numpy(keras_bn.moving_variance), rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's")
def test_batch_norm_training_runs_the_fused_kernel_with_keras_gradients():
    import tensorflow as tf

    ours, keras_bn = _bn_pair()
    x = tf.constant((np.random.RandomState(2).randn(4, 6, 6, 5) * 2 - 1).astype("float32"))
    weights = tf.constant(np.random.RandomState(3).randn(4, 6, 6, 5).astype("float32"))
    gradients = []
    for layer in (ours, keras_bn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * weights)
        gradients.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    for mine, theirs in zip(*gradients):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)
    graph = tf.function(lambda t: ours(t, training=True)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    masked = tf.function(lambda t: ours(t, training=False)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" not in {op.type for op in masked.get_operations()}
