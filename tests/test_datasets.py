"""The CIFAR pickle reader on the real images."""

import numpy as np
import pytest

from keras_preresnet.datasets import load_cifar


def test_cifar10_train_subset(cifar_dir):
    images, labels = load_cifar(cifar_dir, "cifar10", "train")
    assert images.shape == (5000, 32, 32, 3) and images.dtype == np.uint8
    # The original data_batch_1's first row starts 59, 43, 50 (red plane first) and ends 140, 84, 72
    # (blue plane last); its label is frog. Planes must land in the channel axis.
    np.testing.assert_array_equal(images[0, 0, :3, 0], [59, 43, 50])
    np.testing.assert_array_equal(images[0, 31, -3:, 2], [140, 84, 72])
    assert labels[0] == 6
    np.testing.assert_array_equal(np.bincount(labels[:1000], minlength=10),
                                  [102, 112, 99, 92, 99, 85, 107, 102, 99, 103])


def test_cifar100_and_the_folder_itself_as_root(cifar_dir):
    images, labels = load_cifar(cifar_dir / "cifar-100-python", "cifar100", "test")
    assert images.shape == (900, 32, 32, 3)
    assert labels.max() <= 99 and len(np.unique(labels)) == 100


def test_missing_and_corrupt_batches_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar(tmp_path, "cifar10", "test")
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable CIFAR python batch"):
        load_cifar(tmp_path, "cifar10", "test")
    with pytest.raises(ValueError, match="Unknown CIFAR set"):
        load_cifar(tmp_path, "cifar10", "validation")
