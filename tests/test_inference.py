"""BatchNorm folding: the folded model computes what the original computes in inference mode."""

import keras
import numpy as np
import pytest

import keras_preresnet as kp
from keras_preresnet import layers as L
from model_testing import batch_norms, randomize_batchnorm
from support import to_numpy



# BNs that cannot fold: each pre-activation unit's first BN (on the sum) plus the final BN; the
# BN-after-addition units' BN on the sum.
@pytest.mark.parametrize("unit, form, depth, left", [
    ("plain", "basic", 14, 0), ("original", "basic", 14, 0), ("original", "bottleneck", 20, 0),
    ("bn_after_addition", "basic", 14, 6), ("relu_before_addition", "one_layer", 8, 0),
    ("relu_only_preactivation", "bottleneck", 20, 0), ("full_preactivation", "basic", 14, 7),
    ("full_preactivation", "bottleneck", 20, 7),
])
def test_folded_model_matches_in_inference(unit, form, depth, left):
    model = kp.build_resnet(depth, unit=unit, form=form)
    randomize_batchnorm(model)
    folded = kp.fold_batchnorm(model)
    x = np.random.RandomState(1).rand(3, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(to_numpy(folded(x, training=False)), to_numpy(model(x, training=False)),
                               rtol=1e-4, atol=1e-5)
    assert len(batch_norms(folded)) == left


def test_folding_the_imagenet_layout_with_projection_bn():
    model = kp.build_resnet(50, layout="imagenet", units_per_stage=(1, 1, 1, 1), input_shape=(64, 64, 3))
    randomize_batchnorm(model)
    folded = kp.fold_batchnorm(model)
    assert folded.get_layer("conv1_conv").use_bias
    assert folded.get_layer("conv3_block1").projection_norm is None
    x = np.random.RandomState(1).rand(2, 64, 64, 3).astype("float32")
    np.testing.assert_allclose(to_numpy(folded(x)), to_numpy(model(x)), rtol=1e-4, atol=1e-6)


def test_folded_model_saves_and_loads(tmp_path):
    model = kp.build_resnet(8, unit="original", shortcut="exclusive_gating", projection="B")
    randomize_batchnorm(model)
    folded = kp.fold_batchnorm(model)
    path = str(tmp_path / "folded.keras")
    folded.save(path)
    restored = keras.models.load_model(path)
    x = np.random.RandomState(2).rand(2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), rtol=1e-4, atol=1e-6)
    assert restored.get_layer("conv2_block1").fold_batchnorm
    assert isinstance(restored.get_layer("conv2_block1"), L.OriginalUnit)
