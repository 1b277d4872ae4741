import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_ENV = "KERAS_PRERESNET_CIFAR_DIR"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def cifar_dir():
    """The real CIFAR images: $KERAS_PRERESNET_CIFAR_DIR, else ../shared/data/cifar-subset."""
    path = pathlib.Path(os.environ.get(CIFAR_ENV, REPO.parent / "shared" / "data" / "cifar-subset"))
    if not (path / "cifar-10-batches-py").is_dir():
        pytest.fail(f"CIFAR images not found at {path}; set {CIFAR_ENV} to the folder holding cifar-10-batches-py.")
    return path


@pytest.fixture(scope="session")
def images(cifar_dir):
    """Four real CIFAR-10 test images, preprocessed like ImageNet images (256 resize, 224 crop)."""
    from keras_preresnet.datasets import load_cifar
    from keras_preresnet.preprocessing import preprocess_input

    raw, _ = load_cifar(cifar_dir, "cifar10", "test")
    return preprocess_input(raw[:4])
