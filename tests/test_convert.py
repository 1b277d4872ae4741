"""The Torch7 converter against synthetic checkpoints of the released ResNet-200 layout (docs/pretrained.md).

Fast tests use reduced depths (every kind of unit: stride-1 and stride-2 projections, identity
units); the slow test writes all 200 layers. Parity is measured against ``torch_reference``, an
independent PyTorch implementation that reads the same file with ``torchfile``.
"""

import os
import stat

import keras
import numpy as np
import pytest
import torch
import torchfile

import torch7_writer as writer
from keras_preresnet import models
from keras_preresnet import convert as convert_cli
from keras_preresnet.pretrained import converter as convert, torch7
from keras_preresnet.pretrained.converter import ConversionError
from torch_reference import ReleasedPreActResNet, centred_checkpoint, save_with_centred_classifier

BLOCKS = (1, 2, 1, 1)
TOLERANCE = 1e-4  # max |logit difference| in float32

torch.set_num_threads(2)


def keras_model(blocks=BLOCKS, **kwargs):
    return models.build_resnet(200, layout="imagenet", units_per_stage=blocks, classifier_activation=None, **kwargs)


def logits(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def write(tmp_path, name="model.t7", images=None, **kwargs):
    """Writes a synthetic checkpoint; with ``images``, its classifier is centred on them (for parity)."""
    path = str(tmp_path / name)
    checkpoint = writer.released_preresnet(**{"blocks": BLOCKS, **kwargs})
    if images is None:
        writer.save(path, checkpoint)
        return path
    return save_with_centred_classifier(checkpoint, path, images)


@pytest.fixture(scope="module")
def released(tmp_path_factory, images):
    """A reduced-depth checkpoint as released (cudnn classes, no biases, flat storage) and its reference logits."""
    return centred_checkpoint(tmp_path_factory.mktemp("released") / "model.t7", images, blocks=BLOCKS)


def assert_parity(keras_logits, torch_logits):
    assert np.abs(keras_logits - torch_logits).max() <= TOLERANCE
    top5 = lambda logits: np.argsort(-logits, axis=1, kind="stable")[:, :5]  # noqa: E731
    np.testing.assert_array_equal(top5(keras_logits), top5(torch_logits))
    # The synthetic network must not be degenerate, or agreement would prove little.
    assert torch_logits.std() > 0.1 and len(set(top5(torch_logits)[:, 0])) > 1


def unit_branches(model):
    """(branch, shortcut) modules of every residual unit of a synthetic checkpoint."""
    for stage in model.modules[4:8]:
        for unit in stage.modules:
            branch, shortcut = unit.modules[0].modules
            yield branch, shortcut


# -- parity -------------------------------------------------------------------------------------


def test_keras_matches_torch_reference(released, images):
    path, reference = released
    model = keras_model()
    convert.convert(path, model)
    assert_parity(logits(model, images), reference)


def test_nn_classes_zero_biases_running_std_and_copy_convert_alike(tmp_path, images):
    path = write(tmp_path, images=images, cudnn=False, conv_bias="zero", bn_version=1, with_copy=True,
                 flat_storage=False, seed=3)
    model = keras_model()
    convert.convert(path, model)
    assert_parity(logits(model, images), ReleasedPreActResNet(path).logits(images))


def test_biases_before_batchnorm_are_folded_exactly(tmp_path, images):
    checkpoint = writer.released_preresnet(blocks=BLOCKS, conv_bias="random", flat_storage=False, seed=5)
    for branch, _ in unit_branches(checkpoint):
        writer.set_parameter(branch.modules[8], "bias", np.zeros(branch.modules[8].fields["nOutputPlane"]))
    path = save_with_centred_classifier(checkpoint, str(tmp_path / "biased.t7"), images)
    model = keras_model()  # no conv biases: every non-zero bias sits before a BatchNorm
    convert.convert(path, model)
    stem_bias = writer.parameter(checkpoint.modules[0], "bias")
    assert np.abs(stem_bias).max() > 0.1
    torch_mean = writer.parameter(checkpoint.modules[1], "running_mean")
    np.testing.assert_allclose(model.get_layer("conv1_bn").moving_mean.numpy(), torch_mean - stem_bias, atol=1e-6)
    assert_parity(logits(model, images), ReleasedPreActResNet(path).logits(images))


def test_bias_without_batchnorm_after_it_is_refused_unless_the_model_has_biases(tmp_path, images):
    path = write(tmp_path, images=images, conv_bias="random", seed=6)
    with pytest.raises(ConversionError, match=r"modules\[9\] \(cudnn.SpatialConvolution\) has a non-zero bias.*"
                                              r"conv2_block1_3_conv.*use_bias=True"):
        convert.convert(path, keras_model())
    model = keras_model(use_bias=True)
    convert.convert(path, model)
    assert_parity(logits(model, images), ReleasedPreActResNet(path).logits(images))


def test_headless_model_takes_everything_but_the_classifier(released):
    path, _ = released
    full, headless = keras_model(), keras_model(include_top=False, pooling="avg", input_shape=(96, 96, 3))
    convert.convert(path, full)
    pairs = convert.convert(path, headless)
    assert "predictions" not in [name for _, name in pairs]
    for a, b in zip(full.get_layer("conv4_block1").weights, headless.get_layer("conv4_block1").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_every_parameter_module_is_mapped(released):
    path, _ = released
    pairs = dict(convert.convert(path, keras_model()))
    root = "model.modules[5].modules[1].modules[1]"  # stage 1, unit 1, its ConcatTable
    assert pairs[f"{root}.modules[1].modules[9]"] == "conv2_block1_3_conv"
    assert pairs[f"{root}.modules[2].modules[1]"] == "conv2_block1_0_conv"
    assert pairs[f"{root}.modules[2].modules[2]"] == "conv2_block1_0_bn"
    assert pairs["model.modules[13]"] == "predictions"
    n_params = sum(1 for _, m in writer.walk(writer.released_preresnet(blocks=BLOCKS))
                   if m.typename.endswith(("Convolution", "Normalization", "Linear")))
    mapped = sum(1 for name in pairs.values() if name.endswith(("_conv", "_bn", "predictions")))
    assert mapped == n_params


# -- refusals -----------------------------------------------------------------------------------


def test_pre_fix_batchnorm_size_is_refused_and_nothing_is_assigned(tmp_path):
    path = write(tmp_path, prefix_bn_after_3x3=True)
    model = keras_model()
    before = model.get_layer("conv1_conv").kernel.numpy().copy()
    with pytest.raises(ConversionError, match=r"modules\[7\] \(nn.SpatialBatchNormalization\).*"
                                              r"'conv2_block1_2_bn'.*256 channels.*64"):
        convert.convert(path, model)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(), before)


def test_wrong_weight_shape_is_refused(tmp_path):
    checkpoint = writer.released_preresnet(blocks=BLOCKS, flat_storage=False)
    linear = checkpoint.modules[-1]
    writer.set_parameter(linear, "weight", np.zeros((1000, 1024)))
    path = str(tmp_path / "wrong.t7")
    writer.save(path, checkpoint)
    with pytest.raises(ConversionError, match=r"model.modules\[13\] \(nn.Linear\).*'predictions'.*1024"):
        convert.convert(path, keras_model())


@pytest.mark.parametrize("file_blocks", [(1, 1, 1, 1), (1, 2, 2, 1)])
def test_checkpoint_of_another_depth_is_refused(tmp_path, file_blocks):
    path = write(tmp_path, blocks=file_blocks)
    per_stage = ", ".join(map(str, file_blocks))
    with pytest.raises(ConversionError, match=rf"{sum(file_blocks)} residual units, \({per_stage}\) per stage; "
                                              r"the Keras model 5, \(1, 2, 1, 1\).*different depth"):
        convert.convert(path, keras_model())


def test_stride_on_the_first_1x1_is_refused(tmp_path):
    checkpoint = writer.released_preresnet(blocks=BLOCKS)
    branch, _ = list(unit_branches(checkpoint))[1]  # conv3_block1, the first strided unit
    branch.modules[2].fields.update(dW=2, dH=2)
    branch.modules[5].fields.update(dW=1, dH=1)
    path = str(tmp_path / "stride.t7")
    writer.save(path, checkpoint)
    with pytest.raises(ConversionError, match=r"'conv3_block1_1_conv': Torch stride \(2, 2\), Keras stride \(1, 1\)"):
        convert.convert(path, keras_model())


def test_batchnorm_epsilon_is_checked(tmp_path):
    with pytest.raises(ConversionError, match="Torch eps 0.001, Keras epsilon 1e-05"):
        convert.convert(write(tmp_path, eps=1e-3), keras_model())


@pytest.mark.parametrize("keep", [0.5, 0.999, 20])
def test_truncated_file_is_refused(tmp_path, keep):
    path = write(tmp_path)
    data = open(path, "rb").read()
    size = int(len(data) * keep) if keep < 1 else keep
    with open(path, "wb") as f:
        f.write(data[:size])
    with pytest.raises(torch7.Torch7Error, match="truncated"):
        convert.convert(path, keras_model())


@pytest.mark.parametrize("class_name", [b"nn.Sequential", b"cudnn.SpatialConvolution", b"V 1"])
@pytest.mark.parametrize("length", [200, "rest of the file"])
def test_corrupt_class_name_length_gives_a_short_error_with_the_offset(tmp_path, class_name, length):
    path = write(tmp_path)
    data = bytearray(open(path, "rb").read())
    at = data.index(len(class_name).to_bytes(4, "little") + class_name)
    length = len(data) - at - 1000 if length == "rest of the file" else length  # the name swallows what follows
    data[at : at + 4] = length.to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(torch7.Torch7Error) as info:
        convert.convert(path, keras_model())
    message = str(info.value)
    assert len(message) < len(path) + 4 * torch7.EXCERPT_BYTES + 100 and message.isprintable(), message[:1000]
    if length > torch7.MAX_CLASS_NAME:
        assert f"a class name of {length} bytes at byte {at}" in message
    else:  # an escaped excerpt of the bytes read as the name
        assert f"the class name at byte {at} is {repr(class_name)[:-1]}" in message and f"({length} bytes)" in message


def test_tensor_beyond_its_storage_is_refused(tmp_path):
    path = str(tmp_path / "bad.t7")
    with open(path, "wb") as f:
        writer._Writer(f).tensor(writer.Storage(np.zeros(10)), 5, (2, 4), key=object())
    with pytest.raises(torch7.Torch7Error, match="reaches element 12 of a storage of 10"):
        torch7.load(path)


# -- reader, files and command line -------------------------------------------------------------


def test_reader_agrees_with_torchfile(tmp_path):
    path = write(tmp_path, with_copy=True)
    ours, theirs = torch7.load(path), torchfile.load(path)
    assert ours.typename == "nn.Sequential" and theirs.torch_typename() == b"nn.Sequential"
    ours_stage = torch7.sequence(ours.get("modules"))[5]
    branch = torch7.sequence(torch7.sequence(torch7.sequence(ours_stage.get("modules"))[0].get("modules"))[0]
                             .get("modules"))[0]
    their_branch = theirs.modules[5].modules[0].modules[0].modules[0]
    for ours_module, their_module in zip(torch7.sequence(branch.get("modules")), their_branch.modules):
        assert ours_module.typename.encode() == their_module.torch_typename()
        if ours_module.get("weight") is not None:
            np.testing.assert_array_equal(ours_module.get("weight"), their_module.weight)


def test_view_sizes_and_cudnn_input_sizes_are_read_from_long_storages(tmp_path):
    """The released file keeps nn.View's sizes and cudnn's iSize as torch.LongStorage (64-bit integers)."""
    path = write(tmp_path)
    modules = torch7.sequence(torch7.load(path).get("modules"))
    view, conv = modules[-2], modules[0]
    assert view.typename == "nn.View" and conv.typename == "cudnn.SpatialConvolution"
    assert view.get("size").dtype == np.int64 and view.get("size").tolist() == [2048]
    assert conv.get("iSize").dtype == np.int64 and conv.get("iSize").tolist() == [0, 0, 0, 0]
    theirs = torchfile.load(path)
    np.testing.assert_array_equal(theirs.modules[-2].size, [2048])


def test_convert_file_writes_a_loadable_file_atomically(tmp_path, monkeypatch, images, released):
    monkeypatch.setitem(models.IMAGENET_UNITS, 200, ("bottleneck", BLOCKS))
    path, reference = released
    out = tmp_path / "out" / "model.weights.h5"
    assert convert_cli.main([path, str(out)]) == 0
    model = models.PreActResNet200(weights=str(out), classifier_activation=None)
    assert_parity(logits(model, images), reference)
    assert sorted(os.listdir(out.parent)) == ["model.weights.h5"]


def test_converted_file_gets_the_mode_the_umask_gives(tmp_path, monkeypatch, released):
    # 0o027 gives 0o640: neither mkstemp's private 0o600 nor a fixed 0o644.
    monkeypatch.setitem(models.IMAGENET_UNITS, 200, ("bottleneck", BLOCKS))
    old = os.umask(0o027)
    try:
        path = convert_cli.convert_file(released[0], tmp_path / "model.weights.h5")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_failed_conversion_leaves_no_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(models.IMAGENET_UNITS, 200, ("bottleneck", BLOCKS))
    path = write(tmp_path, prefix_bn_after_3x3=True)
    out = tmp_path / "out"
    out.mkdir()
    assert convert_cli.main([path, str(out / "model.weights.h5")]) == 1
    assert "conv2_block1_2_bn" in capsys.readouterr().err
    truncated = tmp_path / "truncated.t7"
    truncated.write_bytes(open(write(tmp_path), "rb").read()[:5000])
    assert convert_cli.main([str(truncated), str(out / "model.weights.h5")]) == 1
    assert os.listdir(out) == []


def test_output_must_be_a_keras_weights_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        convert_cli.convert_file(write(tmp_path), tmp_path / "model.h5")


@pytest.mark.slow
def test_full_resnet200_matches_torch_reference(tmp_path, images):
    """All 200 layers: (3, 24, 36, 3) units, 64,673,960 trainable parameters."""
    path = write(tmp_path, images=images[:4], blocks=writer.RELEASED_BLOCKS, seed=7)
    model = models.PreActResNet200(weights=path, classifier_activation=None)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 64_673_960
    assert_parity(logits(model, images[:4]), ReleasedPreActResNet(path).logits(images[:4]))
