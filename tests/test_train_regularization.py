"""Label smoothing and the weight average (EMA), in the loss and in a training run with every option on."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet.train import configs, network, regularization, trainer
from keras_preresnet.train.evaluate import evaluate_weights
from support import one_device_strategy, small_settings

CONFIG = configs.get_config("cifar10_preact_resnet110")
EVERYTHING = dict(label_smoothing=0.1, lr_schedule="cosine", warmup_epochs=1, ema_decay=0.8, mixup_alpha=0.4,
                  cutmix_factor=1.0, randaugment_ops=2, drop_path_rate=0.2)


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_label_smoothing_trains_on_the_smoothed_targets():
    rng = np.random.RandomState(0)
    logits = rng.normal(size=(6, 10)).astype(np.float32)
    labels = np.array([0, 3, 9, 2, 2, 5])
    e = 0.1
    targets = np.full((6, 10), e / 10) + (1 - e) * np.eye(10)[labels]  # Szegedy et al. 2016, Sec. 7
    expected = -(targets * _log_softmax(logits)).sum(-1)
    loss = regularization.classification_loss(tf.constant(labels), tf.constant(logits), e).numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    plain = regularization.classification_loss(tf.constant(labels), tf.constant(logits)).numpy()
    np.testing.assert_allclose(plain, -_log_softmax(logits)[np.arange(6), labels], rtol=1e-5)
    assert np.all(loss != plain)
    # Soft (mixed) labels are smoothed the same way.
    soft = 0.7 * np.eye(10)[labels] + 0.3 * np.eye(10)[labels[::-1]]
    mixed = regularization.classification_loss(tf.constant(soft, tf.float32), tf.constant(logits), e).numpy()
    np.testing.assert_allclose(mixed, -(((1 - e) * soft + e / 10) * _log_softmax(logits)).sum(-1), rtol=1e-5)


def _settings(model_dir, data_dir, **options):
    return small_settings(model_dir, data_dir, batch_size=32, epochs=2, train_examples=64, eval_examples=64,
                          options=options)


def test_the_trainers_loss_is_the_smoothed_cross_entropy(tmp_path, cifar_dir):
    run = trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, label_smoothing=0.2), one_device_strategy())
    images = tf.random.normal([32, 32, 32, 3], seed=1)
    labels = tf.constant(np.arange(32) % 10, tf.int64)
    _, loss, _ = trainer.compute_gradients(run.model, run.optimizer, images, labels, 32, 0.0,
                                           label_smoothing=run.options.label_smoothing)
    logits = run.model(images, training=True).numpy()  # batch statistics: the same logits as in the step
    targets = 0.02 + 0.8 * np.eye(10)[labels.numpy()]
    assert float(loss) == pytest.approx(-(targets * _log_softmax(logits)).sum(-1).mean(), rel=1e-5)



@pytest.fixture(scope="module")
def everything_run(tmp_path_factory, cifar_dir):
    """2 epochs of 2 steps with every training option on."""
    model_dir = tmp_path_factory.mktemp("everything")
    keras.utils.set_random_seed(0)
    run = trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir, **EVERYTHING), one_device_strategy())
    return run, run.run(), model_dir


def _values(variables):
    return [v.numpy().copy() for v in variables]


def test_a_run_with_every_option_records_them_and_follows_the_cosine(everything_run):
    run, summary, model_dir = everything_run
    assert summary["steps"] == 4 and np.isfinite(summary["final_test_error"])
    assert summary["options"] == dict(run.options.__dict__) and summary["lr_schedule"] == "cosine"
    assert json.loads((model_dir / "run.json").read_text())["options"] == EVERYTHING
    with open(model_dir / "metrics.csv", newline="") as f:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    # The rate of each epoch's last step: 2 warm-up steps (0, 0.05), then the cosine over steps 2-3.
    assert rates == pytest.approx([0.05, 0.1 * (1 + np.cos(np.pi / 2)) / 2], abs=1e-6)


def test_the_averaged_weights_are_tested_and_saved(everything_run, cifar_dir, tmp_path):
    run, summary, model_dir = everything_run
    with regularization.averaged_weights(run.optimizer, run.optimized_variables):
        averaged = {v.path: v.numpy().copy() for v in run.optimized_variables}
    saved = network.build_network(CONFIG, 10, depth=8)
    saved.load_weights(str(model_dir / "last.weights.h5"))
    for variable in saved.trainable_variables:
        np.testing.assert_array_equal(variable.numpy(), averaged[variable.path])
    raw_path = str(tmp_path / "raw.weights.h5")
    run.model.save_weights(raw_path)

    def test_loss(path):
        return evaluate_weights(CONFIG, path, str(cifar_dir), depth=8, limit=64, strategy=one_device_strategy())

    with open(model_dir / "metrics.csv", newline="") as f:
        reported = list(csv.DictReader(f))[-1]
    averaged_result, raw_result = test_loss(str(model_dir / "last.weights.h5")), test_loss(raw_path)
    assert averaged_result["loss"] == pytest.approx(float(reported["test_loss"]), rel=1e-5)
    assert averaged_result["top1_error"] == pytest.approx(summary["final_test_error"], abs=1e-6)
    assert abs(raw_result["loss"] - averaged_result["loss"]) > 1e-3


def test_the_weight_average_follows_its_recurrence_and_differs_from_the_raw_weights(everything_run, cifar_dir):
    run, _, _ = everything_run
    variables = run.optimized_variables
    raw = _values(variables)
    with regularization.averaged_weights(run.optimizer, variables):
        average = _values(variables)
    np.testing.assert_array_equal(raw[0], variables[0].numpy())  # the raw weights come back
    assert sum(not np.allclose(a, w) for a, w in zip(average, raw)) > len(raw) // 2
    # One more step: a <- d a + (1 - d) w with the new weights w.
    from keras_preresnet.train import data

    iterator = run._distributed(data.train_dataset_fn(run.train_source, run.train_transform, run.global_batch,
                                                      1, 7, 0, 0, run.batch_transform))
    run.train_step(iterator)
    stepped = _values(variables)
    with regularization.averaged_weights(run.optimizer, variables):
        after = _values(variables)
    for a0, a1, w1 in zip(average, after, stepped):
        np.testing.assert_allclose(a1, 0.8 * a0 + 0.2 * w1, rtol=1e-5, atol=1e-6)
