"""Fine-tuning: pretrained weights, a new head, a frozen backbone with BatchNorm in inference mode,
unfreezing after N epochs; on real CIFAR images written as an image folder."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet.datasets import load_cifar
from keras_preresnet.train import configs, distribute, network, trainer

CONFIG = configs.get_config("cifar10_preact_resnet110")
CLASSES = {1: "automobile", 6: "frog"}


def _backbone_weights(model):
    return {w.path: w.numpy().copy() for layer in model.layers if layer.name != network.HEAD for w in layer.weights}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, cifar_dir):
    """A CIFAR-10 net trained for one epoch on the real images: the 'pretrained' backbone."""
    model_dir = tmp_path_factory.mktemp("pretrain")
    keras.utils.set_random_seed(0)
    settings = trainer.Settings(model_dir=str(model_dir), data_dir=str(cifar_dir), depth=8, epochs=1, batch_size=128,
                                train_examples=1536,
                                progress=False, recipe="cifar_public_code", lr_scaling="none", eval_examples=100)
    trainer.Trainer(CONFIG, settings, distribute.make_strategy("one_device")).run()
    return str(model_dir / "last.weights.h5")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, cifar_dir):
    """Two CIFAR-10 classes as PNG files: <root>/train/<class>/*.png and <root>/test/<class>/*.png."""
    root = tmp_path_factory.mktemp("folder")
    for split in ("train", "test"):
        images, labels = load_cifar(cifar_dir, "cifar10", split)
        count = 0
        for image, label in zip(images, labels):
            if int(label) in CLASSES:
                folder = root / split / CLASSES[int(label)]
                folder.mkdir(parents=True, exist_ok=True)
                tf.io.write_file(str(folder / f"{count:05d}.png"), tf.io.encode_png(image))
                count += 1
    return root


def test_new_head_replaces_the_classifier_and_keeps_the_pretrained_backbone(pretrained):
    source = network.build_network(CONFIG, 10, depth=8, init_weights=pretrained)
    model = network.build_network(CONFIG, 2, depth=8, init_weights=pretrained, init_classes=10)
    assert model.output_shape == (None, 2) and model.get_layer(network.HEAD).dtype == "float32"
    want, got = _backbone_weights(source), _backbone_weights(model)
    assert want.keys() == got.keys() and len(got) > 20
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_frozen_backbone_runs_batchnorm_in_inference_mode():
    model = network.build_network(CONFIG, 3, depth=8)
    network.set_backbone_trainable(model, False)
    assert [v.path for v in model.trainable_variables] == [v.path for v in model.get_layer(network.HEAD).weights]
    images = tf.random.normal([4, 32, 32, 3], 3.0, 2.0)
    np.testing.assert_allclose(model(images, training=True).numpy(), model(images, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)
    network.set_backbone_trainable(model, True)
    assert not np.allclose(model(images, training=True).numpy(), model(images, training=False).numpy(), atol=1e-3)


def test_fine_tuning_a_frozen_backbone_learns_a_new_task_then_unfreezes(pretrained, image_folder, tmp_path):
    model_dir = tmp_path / "finetune"
    strategy = distribute.make_strategy("one_device")

    def settings(**overrides):
        values = dict(model_dir=str(model_dir), data_dir=str(image_folder), depth=8, epochs=3, batch_size=50,
                      progress=False, recipe="cifar_public_code", lr_scaling="none", init_weights=pretrained,
                      num_classes=2, freeze_backbone=True)
        values.update(overrides)
        return trainer.Settings(**values)

    frozen = trainer.Trainer(CONFIG, settings(), strategy)
    before = _backbone_weights(frozen.model)
    summary = frozen.run()
    assert frozen.model.output_shape == (None, 2)
    # Chance is 50% on the two classes; the new head on the pretrained features does far better.
    assert summary["best_test_error"] < 30, summary
    with open(model_dir / "metrics.csv", newline="") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert losses[-1] < losses[0]
    after = _backbone_weights(frozen.model)
    for key in before:  # kernels, gamma/beta and the BatchNorm moving statistics all untouched
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)

    # The same command with a longer budget, --unfreeze_after and --extend resumes at epoch 3 and trains
    # the whole network from there.
    unfrozen = trainer.Trainer(CONFIG, settings(epochs=4, unfreeze_after=3, extend=True), strategy)
    unfrozen.run()
    changed = _backbone_weights(unfrozen.model)
    moved = [key for key in before if not np.array_equal(changed[key], before[key])]
    assert len(moved) > len(before) // 2
    assert any("moving_mean" in key for key in moved)
    assert os.path.exists(model_dir / "best.weights.h5")
