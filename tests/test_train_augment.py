"""MixUp, CutMix (keras.layers) with labels mixed as the images are, and RandAugment in the input pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet.train import augment

BATCH = 16


def _flat_batch():
    """Image k is the constant k + 1, label k: every output pixel tells which images it came from."""
    images = np.stack([np.full((32, 32, 3), k + 1, np.float32) for k in range(BATCH)])
    return images, np.arange(BATCH, dtype=np.int64)


def _mixed(mix, repeats=8):
    images, labels = _flat_batch()
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat(repeats).map(mix)
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def _is_mixup(x, y):
    # A MixUp image is w x_i + (1 - w) x_j everywhere: its (constant) value is the label-weighted class value.
    values = np.arange(1, BATCH + 1)
    return np.allclose(x, (y @ values)[:, None, None, None], atol=1e-4)


def _is_cutmix(x, y):
    # A CutMix image holds pixels of x_i and x_j; each label weight is the share of its image's pixels.
    shares = np.stack([(x == k + 1).mean(axis=(1, 2, 3)) for k in range(BATCH)], axis=1)
    return np.allclose(y, shares, atol=1e-6)


def test_mixup_mixes_labels_with_the_images_weights():
    batches = _mixed(augment.batch_mix(BATCH, mixup_alpha=0.4, seed=1))
    for x, y in batches:
        assert y.shape == (BATCH, BATCH) and np.allclose(y.sum(1), 1)
        assert _is_mixup(x, y)
    assert any((y.max(1) < 0.9).any() for _, y in batches)  # real mixtures happened


def test_cutmix_labels_are_the_pasted_pixel_shares():
    batches = _mixed(augment.batch_mix(BATCH, cutmix_factor=1.0, seed=2))
    for x, y in batches:
        assert np.allclose(y.sum(1), 1) and _is_cutmix(x, y)
    assert any((y.max(1) < 0.9).any() for _, y in batches)


def test_with_both_each_batch_gets_mixup_or_cutmix():
    kinds = []
    for x, y in _mixed(augment.batch_mix(BATCH, mixup_alpha=0.4, cutmix_factor=1.0, seed=3), repeats=16):
        mixup, cutmix = _is_mixup(x, y), _is_cutmix(x, y)
        assert mixup or cutmix
        kinds.append("cutmix" if cutmix and not mixup else "mixup" if mixup and not cutmix else "either")
    assert "cutmix" in kinds and "mixup" in kinds


def test_options_off_add_no_transform():
    assert augment.batch_mix(10) is None and augment.rand_augment(0, 0.5) is None


def test_rand_augment_changes_images_within_the_pixel_range(cifar_dir):
    from keras_preresnet.datasets import load_cifar

    images, _ = load_cifar(cifar_dir, "cifar10", "test")
    transform = augment.rand_augment(2, 0.5, seed=4)
    out = np.stack([transform(tf.constant(image)).numpy() for image in images[:16]])
    assert out.dtype == np.float32 and out.shape == (16, 32, 32, 3)
    assert out.min() >= 0 and out.max() <= 255
    changed = [np.abs(o - i).mean() > 1 for o, i in zip(out, images[:16].astype(np.float32))]
    assert np.mean(changed) > 0.5
