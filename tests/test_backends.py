"""The same weights give the same outputs on Keras' TensorFlow, JAX and PyTorch backends."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_preresnet as kp
from model_testing import randomize_batchnorm

BACKENDS = ["tensorflow", "jax", "torch"]

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras_preresnet as kp
    model = kp.build_resnet(20, unit=sys.argv[1], shortcut=sys.argv[2], projection="B")
    model.load_weights(sys.argv[3])
    x = np.load(sys.argv[4])
    np.save(sys.argv[5], np.asarray(model.predict(x, verbose=0)))
    folded = kp.fold_batchnorm(model)
    np.save(sys.argv[5] + ".folded.npy", np.asarray(folded.predict(x, verbose=0)))
""")


def _installed(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("unit, shortcut", [("full_preactivation", "identity"),
                                            ("original", "exclusive_gating")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_gives_the_same_outputs(backend, unit, shortcut, tmp_path):
    if backend == keras.backend.backend():
        pytest.skip("this process already runs that backend")
    if not _installed(backend):
        pytest.fail(f"backend {backend} is not installed; `pip install -e .[test]` installs it")
    model = kp.build_resnet(20, unit=unit, shortcut=shortcut, projection="B")
    randomize_batchnorm(model)
    rng = np.random.RandomState(0)
    weights, inputs, outputs = (str(tmp_path / n) for n in ("w.weights.h5", "x.npy", "y.npy"))
    model.save_weights(weights)
    x = rng.rand(4, 32, 32, 3).astype("float32")
    np.save(inputs, x)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", SCRIPT, unit, shortcut, weights, inputs, outputs],
                   env=env, check=True, timeout=600)
    expected = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(np.load(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(outputs + ".folded.npy"), expected, rtol=1e-4, atol=1e-5)


FEATURES_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras_preresnet as kp
    model = kp.build_resnet(18, layout="imagenet", units_per_stage=(1, 1, 1, 1), include_top=False,
                            input_shape=(None, None, 3))
    model.load_weights(sys.argv[1])
    extractor = kp.features.feature_extractor(model)
    outputs = extractor.predict(np.load(sys.argv[2]), verbose=0)
    np.savez(sys.argv[3], *[np.asarray(o) for o in outputs])
""")


@pytest.mark.parametrize("backend", BACKENDS)
def test_feature_pyramid_is_the_same_on_every_backend(backend, tmp_path):
    if backend == keras.backend.backend():
        pytest.skip("this process already runs that backend")
    model = kp.build_resnet(18, layout="imagenet", units_per_stage=(1, 1, 1, 1), include_top=False,
                            input_shape=(None, None, 3))
    randomize_batchnorm(model)
    weights, inputs, outputs = (str(tmp_path / n) for n in ("w.weights.h5", "x.npy", "y.npz"))
    model.save_weights(weights)
    x = np.random.RandomState(1).rand(2, 64, 96, 3).astype("float32")  # not square, not the default size
    np.save(inputs, x)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", FEATURES_SCRIPT, weights, inputs, outputs], env=env, check=True, timeout=600)
    expected = kp.features.feature_extractor(model).predict(x, verbose=0)
    got = np.load(outputs)
    assert len(got.files) == len(expected) == 5
    for i, level in enumerate(expected):
        np.testing.assert_allclose(got[f"arr_{i}"], level, rtol=1e-4, atol=1e-4)
