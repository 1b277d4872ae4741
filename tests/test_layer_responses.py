"""Layer responses (ResNet paper, Fig. 7) measured where the answer is known."""

import json

import keras
import numpy as np
import pytest

import keras_preresnet as kp
from keras_preresnet import defaults
from keras_preresnet import plot_layer_responses
from keras_preresnet.analysis import layer_responses as lr
from keras_preresnet.datasets import load_cifar


@pytest.fixture(scope="module")
def cifar_images(cifar_dir):
    """64 real CIFAR-10 test images, normalised as the CIFAR nets expect."""
    raw, _ = load_cifar(cifar_dir, "cifar10", "test")
    return ((raw[:64].astype("float32") - np.array(defaults.CIFAR10_MEAN)) / np.array(defaults.CIFAR10_STD)).astype(
        "float32")


@pytest.fixture(scope="module")
def resnet20():
    keras.utils.set_random_seed(1)
    return kp.ResNet20()


def _set(layer, **values):
    for name, value in values.items():
        getattr(layer, name).assign(np.asarray(value, "float32"))


def test_every_3x3_layer_once_in_network_order(resnet20, cifar_images):
    names = list(lr.layer_responses(resnet20, cifar_images[:4]))
    assert len(names) == 19  # the stem and 18 layers of the 9 units
    assert names[:4] == ["conv1_conv", "conv2_block1_1_conv", "conv2_block1_2_conv", "conv2_block2_1_conv"]
    assert names[-1] == "conv4_block3_2_conv"


def test_imagenet_nets_measure_their_3x3_layers_not_the_7x7_stem(cifar_images):
    model = kp.build_resnet(18, unit="original", layout="imagenet", units_per_stage=(1, 1, 1, 1), input_shape=(32, 32, 3))
    names = list(lr.layer_responses(model, cifar_images[:2]))
    assert names == [f"conv{s}_block1_{i}_conv" for s in (2, 3, 4, 5) for i in (1, 2)]


def test_stem_response_is_its_batch_norm_output(resnet20, cifar_images):
    stem = keras.Model(resnet20.inputs, resnet20.get_layer("conv1_bn").output)
    expected = np.std(keras.ops.convert_to_numpy(stem(cifar_images, training=False)).astype(np.float64))
    # Batches of 10 over 64 images: the pooled statistics equal the statistic of all images at once.
    assert lr.layer_responses(resnet20, cifar_images, batch_size=10)["conv1_conv"] == pytest.approx(expected, rel=1e-6)


def _unit_layer(model, name):
    return next(layer for layer in model._flatten_layers() if layer.name == name)


def test_zeroed_residual_branch_has_zero_response(cifar_images):
    keras.utils.set_random_seed(2)
    model = kp.ResNet20()
    before = lr.layer_responses(model, cifar_images)
    norm = _unit_layer(model, "conv3_block2_2_bn")
    _set(norm, gamma=np.zeros(norm.gamma.shape), beta=np.zeros(norm.beta.shape))
    after = lr.layer_responses(model, cifar_images)
    assert before["conv3_block2_2_conv"] > 0.1
    assert after["conv3_block2_2_conv"] == 0.0  # read before the addition, not after it
    assert after["conv3_block3_1_conv"] > 0.1  # the shortcut still carries the signal on
    assert after["conv3_block2_1_conv"] == before["conv3_block2_1_conv"]  # earlier layers untouched


def test_response_is_read_after_batch_norm(cifar_images):
    keras.utils.set_random_seed(3)
    model = kp.ResNet20()
    before = lr.layer_responses(model, cifar_images)["conv2_block2_1_conv"]
    norm = _unit_layer(model, "conv2_block2_1_bn")
    _set(norm, gamma=3 * keras.ops.convert_to_numpy(norm.gamma), beta=3 * keras.ops.convert_to_numpy(norm.beta))
    assert lr.layer_responses(model, cifar_images)["conv2_block2_1_conv"] == pytest.approx(3 * before, rel=1e-5)


@pytest.mark.parametrize("build, bn", [(kp.ResNet20, "conv2_block2_1_bn"), (kp.PreActResNet110, "conv2_block2_1_bn")])
def test_response_is_read_before_the_relu(build, bn, cifar_images):
    keras.utils.set_random_seed(4)
    model = build()
    before = lr.layer_responses(model, cifar_images[:16])["conv2_block2_1_conv"]
    # A beta this negative makes every ReLU output zero; the std before the ReLU ignores a shift.
    norm = _unit_layer(model, bn)
    _set(norm, beta=np.full(norm.beta.shape, -100.0))
    after = lr.layer_responses(model, cifar_images[:16])["conv2_block2_1_conv"]
    assert before > 0.1 and after == pytest.approx(before, rel=1e-4)


def test_preactivation_unit_response_is_its_residual_function(cifar_images):
    keras.utils.set_random_seed(5)
    model = kp.PreActResNet110()
    before = lr.layer_responses(model, cifar_images[:16])
    conv = _unit_layer(model, "conv3_block4_2_conv")
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    conv.kernel.assign(2 * kernel)  # no BN follows: F(x) doubles, and so does its std
    doubled = lr.layer_responses(model, cifar_images[:16])
    assert doubled["conv3_block4_2_conv"] == pytest.approx(2 * before["conv3_block4_2_conv"], rel=1e-5)
    conv.kernel.assign(np.zeros(kernel.shape, "float32"))
    assert lr.layer_responses(model, cifar_images[:16])["conv3_block4_2_conv"] == 0.0


def test_ranked_is_descending(resnet20, cifar_images):
    responses = lr.layer_responses(resnet20, cifar_images[:8])
    order = lr.ranked(responses)
    assert order == sorted(responses.values(), reverse=True) and order[0] >= order[-1]
    assert len(set(order)) > 1


def test_bad_images_are_refused(resnet20):
    with pytest.raises(ValueError, match=r"`images` must be a non-empty batch \[N, H, W, C\]"):
        lr.layer_responses(resnet20, np.zeros((32, 32, 3), "float32"))
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        lr.layer_responses(resnet20, np.zeros((1, 32, 32, 3), "float32"), batch_size=0)


def test_figure_has_original_and_sorted_order_panels():
    responses = {"a": {"x": 1.0, "y": 3.0, "z": 2.0}, "b": {"x": 0.5, "y": 0.2, "z": 0.4}}
    figure = lr.draw_layer_responses(responses)
    top, bottom = figure.axes
    assert [list(line.get_ydata()) for line in top.get_lines()] == [[1.0, 3.0, 2.0], [0.5, 0.2, 0.4]]
    assert [list(line.get_ydata()) for line in bottom.get_lines()] == [[3.0, 2.0, 1.0], [0.5, 0.4, 0.2]]
    assert [t.get_text() for t in top.get_legend().get_texts()] == ["a", "b"]


def test_command_draws_fig7_for_several_models(tmp_path, cifar_dir):
    weights = tmp_path / "r20.weights.h5"
    kp.ResNet20().save_weights(weights)
    output, numbers = tmp_path / "fig7.png", tmp_path / "fig7.json"
    code = plot_layer_responses.main([f"--model=resnet20={weights}", "--model=PreActResNet110", f"--cifar_dir={cifar_dir}",
                    "--images=8", f"--output={output}", f"--json={numbers}"])
    assert code == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    measured = json.loads(numbers.read_text())
    label = f"ResNet20 ({tmp_path.name}/r20.weights.h5)"
    assert list(measured) == [label, "PreActResNet110 (untrained)"]
    assert len(measured[label]) == 19 and len(measured["PreActResNet110 (untrained)"]) == 109


def test_command_names_a_bad_model_and_writes_nothing(tmp_path, cifar_dir, capsys):
    output = tmp_path / "fig7.png"
    assert plot_layer_responses.main(["--model=resnet21", f"--cifar_dir={cifar_dir}", f"--output={output}"]) == 1
    assert "Unknown model 'resnet21'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
