"""weights='imagenet' resolution: cache, download (file:// only, never the network), conversion, errors.

ResNet-200 is shrunk to (1, 2, 1, 1) units per stage for these tests by patching the depth table, so
the whole path -- builder, cache, download, conversion, cached file, loading -- runs as it does for
the real checkpoint.
"""

import dataclasses
import os
import socket
import stat

import keras
import numpy as np
import pytest

from keras_preresnet import models
from keras_preresnet.pretrained import weights
from torch_reference import centred_checkpoint

BLOCKS = (1, 2, 1, 1)
ENTRY = weights.PRETRAINED["preact_resnet200"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach a remote host fails the test."""
    def refuse(self, address, *args):
        raise AssertionError(f"test tried to open a network connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def small_resnet200(monkeypatch, tmp_path):
    monkeypatch.setitem(models.IMAGENET_UNITS, 200, ("bottleneck", BLOCKS))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(weights.URL_ENV, raising=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, images):
    """A synthetic 'resnet-200.t7' on a local 'mirror' and the reference logits of its network."""
    return centred_checkpoint(tmp_path_factory.mktemp("mirror") / "resnet-200.t7", images, blocks=BLOCKS, seed=11)


def logits(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def offline(monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("URL fetch failure: network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", fail)


def test_imagenet_downloads_converts_caches_and_matches_reference(monkeypatch, checkpoint, images):
    path, reference = checkpoint
    monkeypatch.setenv(weights.URL_ENV, "file://" + path)
    model = models.PreActResNet200(weights="imagenet", classifier_activation=None)
    np.testing.assert_allclose(logits(model, images), reference, atol=1e-4)
    cached = sorted(os.listdir(weights.cache_dir()))
    assert cached == sorted([ENTRY.keras_file, ENTRY.keras_file + weights.CHECKSUM_SUFFIX, ENTRY.torch_file])

    # Later calls use the converted file alone.
    os.remove(os.path.join(weights.cache_dir(), ENTRY.torch_file))
    offline(monkeypatch)
    again = models.PreActResNet200(weights="imagenet", classifier_activation=None)
    np.testing.assert_allclose(logits(again, images), reference, atol=1e-4)


def test_cache_files_get_the_mode_the_umask_gives(monkeypatch, checkpoint):
    monkeypatch.setenv(weights.URL_ENV, "file://" + checkpoint[0])
    old = os.umask(0o027)
    try:
        models.PreActResNet200(weights="imagenet")
    finally:
        os.umask(old)
    cached = sorted(os.listdir(weights.cache_dir()))
    assert cached == sorted([ENTRY.keras_file, ENTRY.keras_file + weights.CHECKSUM_SUFFIX, ENTRY.torch_file])
    for name in cached:
        assert stat.S_IMODE(os.stat(os.path.join(weights.cache_dir(), name)).st_mode) == 0o640, name


def test_offline_error_names_the_url_and_both_ways_out(monkeypatch):
    offline(monkeypatch)
    with pytest.raises(weights.WeightsUnavailableError) as info:
        models.PreActResNet200(weights="imagenet")
    message = str(info.value)
    assert ENTRY.url in message
    assert weights.cache_dir() in message and "weights=<path" in message
    assert not os.path.exists(os.path.join(weights.cache_dir(), ENTRY.keras_file))


def test_checkpoint_put_into_the_cache_by_hand_is_used(monkeypatch, checkpoint, images):
    path, reference = checkpoint
    os.makedirs(weights.cache_dir())
    os.symlink(path, os.path.join(weights.cache_dir(), ENTRY.torch_file))
    offline(monkeypatch)
    model = models.PreActResNet200(weights="imagenet", classifier_activation=None)
    np.testing.assert_allclose(logits(model, images), reference, atol=1e-4)


def test_mirror_url_argument(checkpoint):
    path, _ = checkpoint
    cached = weights.torch_checkpoint("preact_resnet200", url="file://" + path)
    assert cached == os.path.join(weights.cache_dir(), ENTRY.torch_file)
    assert open(cached, "rb").read() == open(path, "rb").read()


def test_corrupt_cached_checkpoint_is_reported_and_nothing_is_cached(monkeypatch, checkpoint):
    os.makedirs(weights.cache_dir())
    broken = os.path.join(weights.cache_dir(), ENTRY.torch_file)
    with open(broken, "wb") as f:
        f.write(open(checkpoint[0], "rb").read()[:100_000])
    with pytest.raises(ValueError, match=r"resnet-200.t7 could not be converted.*truncated.*Delete it"):
        models.PreActResNet200(weights="imagenet")
    assert os.listdir(weights.cache_dir()) == [ENTRY.torch_file]


def test_headless_pooled_model_at_320_takes_the_pretrained_features(monkeypatch, checkpoint, images):
    path, _ = checkpoint
    monkeypatch.setenv(weights.URL_ENV, "file://" + path)
    headless = models.PreActResNet200(weights="imagenet", include_top=False, pooling="avg",
                                      input_shape=(320, 320, 3))
    full = models.PreActResNet200(weights="imagenet", input_shape=(320, 320, 3))
    features = keras.Model(full.input, full.get_layer("avg_pool").output)
    x = np.random.RandomState(0).standard_normal((2, 320, 320, 3)).astype(np.float32)
    np.testing.assert_allclose(logits(headless, x), logits(features, x), atol=1e-5)
    assert np.abs(logits(headless, x)).max() > 0.1


@pytest.mark.parametrize("kind", ["t7", "keras"])
def test_weights_path_accepts_t7_and_keras_files(tmp_path, checkpoint, images, kind):
    path, reference = checkpoint
    if kind == "keras":
        source = models.PreActResNet200(weights=path)
        path = str(tmp_path / "converted.weights.h5")
        source.save_weights(path)
    model = models.PreActResNet200(weights=path, classifier_activation=None)
    np.testing.assert_allclose(logits(model, images), reference, atol=1e-4)


def test_keras_file_of_another_architecture_is_refused(tmp_path):
    path = str(tmp_path / "other.weights.h5")
    models.build_resnet(200, layout="imagenet", units_per_stage=(1, 1, 1, 1)).save_weights(path)
    with pytest.raises(ValueError, match="Could not load the weights file"):
        models.PreActResNet200(weights=path)


def test_unknown_architecture_has_no_imagenet_weights():
    with pytest.raises(ValueError, match="preact_resnet200"):
        weights.torch_checkpoint("preact_resnet50")


def _converted(monkeypatch, checkpoint):
    monkeypatch.setenv(weights.URL_ENV, "file://" + checkpoint[0])
    models.PreActResNet200(weights="imagenet")
    return os.path.join(weights.cache_dir(), ENTRY.keras_file)


def test_converted_file_is_checked_against_its_sha256_on_load(monkeypatch, checkpoint, images):
    cached = _converted(monkeypatch, checkpoint)
    with open(cached + weights.CHECKSUM_SUFFIX) as f:
        assert f.read() == f"{weights.file_sha256(cached)}  {ENTRY.keras_file}\n"
    # Replaced by another network's weights of the same structure: loadable, but not what was converted.
    keras.utils.set_random_seed(3)
    models.PreActResNet200(classifier_activation=None).save_weights(cached)
    with pytest.raises(weights.ChecksumError) as info:
        models.PreActResNet200(weights="imagenet")
    message = str(info.value)
    assert "damaged or was replaced" in message and weights.file_sha256(cached) in message
    assert f"python -m keras_preresnet.convert {ENTRY.torch_file} {cached}" in message
    # Deleting it, as the message says, converts again.
    os.remove(cached)
    os.remove(cached + weights.CHECKSUM_SUFFIX)
    model = models.PreActResNet200(weights="imagenet", classifier_activation=None)
    np.testing.assert_allclose(logits(model, images), checkpoint[1], atol=1e-4)


def test_pinned_sha256_in_the_record_is_checked(monkeypatch, checkpoint):
    cached = _converted(monkeypatch, checkpoint)
    pinned = dataclasses.replace(ENTRY, sha256="0" * 64)
    monkeypatch.setitem(weights.PRETRAINED, "preact_resnet200", pinned)
    with pytest.raises(weights.ChecksumError, match="the weights record says 0000"):
        models.PreActResNet200(weights="imagenet")
    monkeypatch.setitem(weights.PRETRAINED, "preact_resnet200", dataclasses.replace(ENTRY, sha256=weights.file_sha256(cached)))
    models.PreActResNet200(weights="imagenet")


def test_converted_file_copied_in_by_hand_is_trusted_from_then_on(monkeypatch, checkpoint):
    cached = _converted(monkeypatch, checkpoint)
    os.remove(cached + weights.CHECKSUM_SUFFIX)
    offline(monkeypatch)
    models.PreActResNet200(weights="imagenet")
    assert os.path.exists(cached + weights.CHECKSUM_SUFFIX)


def test_list_models_names_every_builder_and_those_with_weights():
    import keras_preresnet as kp

    assert kp.list_models(pretrained=True) == sorted(weights.PRETRAINED) == ["preact_resnet200"]
    assert kp.list_models() == list(models.ARCHITECTURES)
    assert kp.list_models("preact_resnet1*") == [
        "preact_resnet110", "preact_resnet164", "preact_resnet1001", "preact_resnet18", "preact_resnet101",
        "preact_resnet152"]


def test_weights_record_has_what_preprocessing_and_decoding_need():
    cfg = weights.pretrained_cfg("preact_resnet200")
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 224 / 256 and cfg["num_classes"] == 1000
    assert cfg["url"] == ENTRY.url and cfg["top1_error"] == 21.66 and cfg["sha256"] is None
    assert len(cfg["class_names"]) == 1000 and cfg["class_names"][0] == "tench"
    with pytest.raises(ValueError, match="No ImageNet weights"):
        weights.pretrained_cfg("resnet20")


def test_imagenet_weights_reach_the_feature_pyramid(monkeypatch, checkpoint):
    from keras_preresnet import features

    monkeypatch.setenv(weights.URL_ENV, "file://" + checkpoint[0])
    pyramid = models.PreActResNet200(weights="imagenet", features_only=True, input_shape=(None, None, 3))
    full = models.PreActResNet200(weights="imagenet", classifier_activation=None, input_shape=(None, None, 3))
    x = np.random.RandomState(0).standard_normal((1, 96, 128, 3)).astype(np.float32)
    levels = [keras.ops.convert_to_numpy(level) for level in pyramid(x)]
    for got, want in zip(levels, features.feature_extractor(full)(x)):
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(want), atol=1e-5)
    # The last level is what the pretrained classifier pools: the logits follow from it.
    classifier = full.get_layer("predictions")
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in classifier.weights)
    np.testing.assert_allclose(levels[-1].mean(axis=(1, 2)) @ kernel + bias, logits(full, x), atol=1e-4)
