"""The training loop on real CIFAR images: run files, learning, weight decay, precision, stops and resumes."""

import csv
import dataclasses
import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet.train import configs, distribute, network, schedules, trainer
from support import one_device_strategy, small_settings

CONFIG = configs.get_config("cifar10_preact_resnet110")


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.config.set_dtype_policy("float32")


def _settings(model_dir, data_dir, **overrides):
    return small_settings(model_dir, data_dir, **dict(dict(batch_size=64, epochs=2, train_examples=1024,
                                                           eval_examples=500), **overrides))



@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cifar_dir):
    model_dir = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)
    run = trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir), one_device_strategy())
    summary = run.run()
    return model_dir, summary


def test_run_writes_metrics_weights_curves_and_tensorboard_logs(finished_run):
    model_dir, summary = finished_run
    with open(model_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["step"]) for r in rows] == [16, 32]
    saved = json.loads((model_dir / "metrics.json").read_text())
    assert saved["steps"] == 32 and saved["final_test_error"] == pytest.approx(float(rows[-1]["test_error"]), abs=1e-3)
    assert saved["best_test_error"] == pytest.approx(min(float(r["test_error"]) for r in rows), abs=1e-3)
    assert (model_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert glob.glob(str(model_dir / "logs" / "train" / "events.out.tfevents.*"))
    assert glob.glob(str(model_dir / "logs" / "test" / "events.out.tfevents.*"))
    assert not glob.glob(str(model_dir / "*.tmp-*"))
    tags = set()
    for path in glob.glob(str(model_dir / "logs" / "test" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"test_error", "test_top5_error", "test_loss"} <= tags


def test_run_learns_on_real_cifar_images(finished_run):
    _, summary = finished_run
    rows = json.loads((finished_run[0] / "metrics.json").read_text())
    # Chance is 90% error on CIFAR-10; 32 steps of a 1-unit-per-stage net get well below it.
    assert rows["best_test_error"] < 80
    with open(finished_run[0] / "metrics.csv", newline="") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    # Epoch means of 16 noisy steps need not fall monotonically (a CI run saw 2.165 then 2.168), but by
    # the second epoch the mean training loss is below that of a uniform guess, ln(10) = 2.303.
    assert losses[0] < np.log(10) + 0.2
    assert losses[1] < np.log(10)


def test_saved_weights_reproduce_the_reported_test_error(finished_run, cifar_dir):
    from keras_preresnet.train.evaluate import evaluate_weights

    model_dir, summary = finished_run
    result = evaluate_weights(CONFIG, str(model_dir / "last.weights.h5"), str(cifar_dir), depth=8, limit=500,
                              strategy=one_device_strategy())
    assert result["images"] == 500
    assert result["top1_error"] == pytest.approx(summary["final_test_error"], abs=1e-6)
    assert result["top5_error"] == pytest.approx(summary["final_test_top5_error"], abs=1e-6)


def test_finished_run_started_again_does_nothing_more(finished_run, cifar_dir):
    model_dir, _ = finished_run
    before = (model_dir / "metrics.csv").read_text()
    summary = trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir), one_device_strategy()).run()
    assert summary["steps"] == 32 and (model_dir / "metrics.csv").read_text() == before


def test_restart_rewrites_what_a_kill_after_the_last_checkpoint_cut_short(finished_run, tmp_path, cifar_dir):
    """The end-of-epoch checkpoint holds the epoch's row; the files written after it are redone from it."""
    model_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], model_dir)
    complete = (model_dir / "metrics.csv").read_text()
    (model_dir / "metrics.csv").write_text(complete[: complete.rindex("\n", 0, -1) + 12])  # half a row
    os.remove(model_dir / "curves.png")
    os.remove(model_dir / "last.weights.h5")
    summary = trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir), one_device_strategy()).run()
    assert summary["steps"] == 32
    assert (model_dir / "metrics.csv").read_text() == complete
    assert (model_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = network.build_network(CONFIG, 10, depth=8)
    model.load_weights(model_dir / "last.weights.h5")
    reference = network.build_network(CONFIG, 10, depth=8)
    reference.load_weights(finished_run[0] / "last.weights.h5")
    for ours, theirs in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_weight_decay_is_coupled_l2_on_every_trainable_weight(tmp_path, cifar_dir):
    run = trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, train_examples=64, eval_examples=64,
                                            weight_decay=0.01), one_device_strategy())
    run._set_frozen(0)
    images = tf.random.normal([64, 32, 32, 3])
    labels = tf.constant(np.arange(64) % 10, tf.int64)
    with_decay, _, _ = trainer.compute_gradients(run.model, run.optimizer, images, labels, run.global_batch,
                                                 run.weight_decay)
    without, _, _ = trainer.compute_gradients(run.model, run.optimizer, images, labels, run.global_batch, 0.0)
    variables = run.model.trainable_variables
    names = {v.path for v in variables}
    assert any("gamma" in n for n in names) and any("beta" in n for n in names) and any("bias" in n for n in names)
    for variable, a, b in zip(variables, with_decay, without):
        np.testing.assert_allclose((a - b).numpy(), 0.01 * variable.numpy(), rtol=1e-3, atol=1e-6)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(finished_run, tmp_path, cifar_dir):
    model_dir = tmp_path / "diverging"
    shutil.copytree(finished_run[0], model_dir)
    good = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    metrics = (model_dir / "metrics.csv").read_text()
    run = trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir, epochs=3, learning_rate=1e12, extend=True),
                          one_device_strategy())
    with pytest.raises(trainer.TrainingError, match=r"(loss became (nan|inf)|weights became non-finite).*"
                                                    r"last good checkpoint is kept"):
        run.run()
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")) == good
    assert (model_dir / "metrics.csv").read_text() == metrics
    restored = network.build_network(CONFIG, 10, depth=8)
    restored.load_weights(str(model_dir / "last.weights.h5"))
    assert all(np.all(np.isfinite(w)) for w in restored.get_weights())


def test_resuming_with_another_batch_size_is_refused(finished_run, tmp_path, cifar_dir):
    model_dir = tmp_path / "other"
    shutil.copytree(finished_run[0], model_dir)
    with pytest.raises(trainer.TrainingError, match="other settings.*global_batch 64 -> 32"):
        trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir, batch_size=32, epochs=3), one_device_strategy()).run()


def test_resuming_with_another_budget_or_schedule_needs_extend(finished_run, tmp_path, cifar_dir):
    model_dir = tmp_path / "longer"
    shutil.copytree(finished_run[0], model_dir)
    record = (model_dir / "run.json").read_text()
    with pytest.raises(trainer.TrainingError, match=r"another budget or schedule \(total_steps 32 -> 48, schedule "
                                                    r".*\); .*pass --extend to continue it on the new schedule from its "
                                                    r"step 32"):
        trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir, epochs=3), one_device_strategy()).run()
    with pytest.raises(trainer.TrainingError, match=r"schedule \{'learning_rates': \[0.1, 0.01.*\].* -> "
                                                    r"\{'learning_rates': \[0.5, 0.05, 0.005"):
        trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir, learning_rate=0.5), one_device_strategy()).run()
    with pytest.raises(trainer.TrainingError, match=r"--extend cannot shorten .* to 16 steps: its checkpoint is at step 32"):
        trainer.Trainer(CONFIG, _settings(model_dir, cifar_dir, epochs=1, extend=True), one_device_strategy()).run()
    assert (model_dir / "run.json").read_text() == record


@pytest.mark.parametrize("precision,xla", [
    pytest.param("mixed_bfloat16", False, marks=pytest.mark.slow),
    pytest.param("float32", True, marks=pytest.mark.slow),
])
def test_precision_and_xla_train_with_float32_weights_and_logits(precision, xla, tmp_path, cifar_dir):
    run = trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, precision=precision, xla=xla, epochs=1,
                                            batch_size=32, train_examples=64, eval_examples=32), one_device_strategy())
    summary = run.run()
    assert summary["steps"] == 2 and summary["test_examples"] == 32
    # The reported error counts whole images of the 32 (an evaluation that skipped or double-counted
    # images, or returned NaN, would not).
    wrong = summary["final_test_error"] * 32 / 100
    assert 0 <= wrong <= 32 and wrong == pytest.approx(round(wrong), abs=1e-6)
    _assert_float32_weights_and_logits(run, precision)


def test_mixed_float16_learns_on_real_cifar_images_with_loss_scaling(tmp_path, cifar_dir):
    """Under mixed_float16 the loss is scaled before the float16 backward pass and the gradients unscaled
    before the update: without the first, most float16 gradients underflow and the unscaled update is
    ~1/32768 of the right one (nothing is learnt); without the second, the update is 32768 times too
    large (the loss diverges)."""
    keras.utils.set_random_seed(0)
    run = trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, precision="mixed_float16", epochs=3,
                                            train_examples=512, eval_examples=500), one_device_strategy())
    summary = run.run()
    with open(tmp_path / "metrics.csv", newline="") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    # 24 steps (measured: training loss 2.23, 2.04, 1.99; test error 81.4% on 500 images) take the loss
    # well below a uniform guess's ln(10) = 2.303 and the test error 3 standard errors below chance (90%).
    # Without the loss scaled the loss stays at 2.44 and the error at 90.6%; without the gradients
    # unscaled the loss is NaN at step 2.
    assert summary["steps"] == 24 and len(losses) == 3
    assert losses[-1] < min(losses[0], np.log(10)) - 0.15, losses
    assert summary["best_test_error"] < 86, summary
    _assert_float32_weights_and_logits(run, "mixed_float16")
    _assert_loss_scaling_skips_overflowing_steps(run)


def _assert_float32_weights_and_logits(run, precision):
    assert all(v.dtype == "float32" for v in run.model.weights)
    assert run.model.output.dtype == "float32"
    conv = run.model.get_layer("conv1_conv")
    assert conv.compute_dtype == {"float32": "float32", "mixed_float16": "float16",
                                  "mixed_bfloat16": "bfloat16"}[precision]


def _assert_loss_scaling_skips_overflowing_steps(run):
    """Under mixed_float16 a step whose float16 gradients overflow changes no weight and halves the scale."""
    optimizer = run.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    scale = float(optimizer.dynamic_scale)
    before = [v.numpy() for v in run.model.trainable_variables]
    ordinary = tf.random.stateless_normal([4, 32, 32, 3], seed=[1, 2]), tf.constant([0, 1, 2, 3], tf.int64)
    gradients = lambda images, labels: trainer.compute_gradients(  # noqa: E731
        run.model, optimizer, images, labels, run.global_batch, run.weight_decay)[0]
    scaled_before = gradients(*ordinary)
    images = tf.fill([4, 32, 32, 3], 60000.0)  # near float16's maximum: the activations overflow
    grads = gradients(images, tf.zeros([4], tf.int64))
    assert not all(np.all(np.isfinite(g.numpy())) for g in grads)
    optimizer.apply(grads, run.model.trainable_variables)
    assert float(optimizer.dynamic_scale) == scale / 2
    for old, variable in zip(before, run.model.trainable_variables):
        np.testing.assert_array_equal(old, variable.numpy())
    # The gradients are those of the loss times the scale: half the scale, half the gradients (up to
    # float16 rounding, ~1e-3 relative; without scaling the relative difference would be 1).
    scaled_after = gradients(*ordinary)
    a = np.concatenate([g.numpy().ravel() for g in scaled_before])
    b = np.concatenate([g.numpy().ravel() for g in scaled_after])
    assert np.linalg.norm(2 * b - a) / np.linalg.norm(a) < 0.02


def test_bad_settings_are_refused_up_front(tmp_path, cifar_dir):
    with pytest.raises(ValueError, match="--freeze_backbone needs pretrained weights"):
        trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, freeze_backbone=True), one_device_strategy())
    with pytest.raises(ValueError, match="either --epochs or --steps"):
        trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, steps=5), one_device_strategy())
    with pytest.raises(ValueError, match="positive multiple"):
        distribute.global_batch_size(distribute.make_strategy("one_device"), 0)
    with pytest.raises(ValueError, match="precision"):
        trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, precision="float8"), one_device_strategy())
    assert not os.path.exists(tmp_path / "checkpoints")


def test_corrupt_image_stops_with_a_data_error(tmp_path, cifar_dir):
    from keras_preresnet.datasets import load_cifar
    from keras_preresnet.train import data

    images, labels = load_cifar(cifar_dir, "cifar10", "test")
    for split, count in (("train", 8), ("test", 4)):
        for i in range(count):
            folder = tmp_path / "images" / split / f"class{labels[i] % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(images[i]))
    (tmp_path / "images" / "train" / "class0" / "broken.png").write_bytes(b"\x89PNG truncated")
    run = trainer.Trainer(CONFIG, _settings(tmp_path / "run", tmp_path / "images", batch_size=9, epochs=1),
                          one_device_strategy())
    with pytest.raises(data.DataError, match="Could not read a training image"):
        run.run()


def test_optimizer_learning_rate_follows_the_resolved_schedule():
    schedule = configs.resolve_schedule(configs.RECIPES["cifar_paper_warmup"], 50_000, 128)
    rate = schedules.StepSchedule(schedule.boundaries, schedule.values)
    for step in (0, 399, 400, 31_999, 32_000, 47_999, 48_000, 63_999):
        assert float(rate(step)) == pytest.approx(schedule.learning_rate(step)), step
    assert float(rate(399)) == pytest.approx(0.01) and float(rate(400)) == pytest.approx(0.1)


def test_the_trainer_runs_the_absolute_warm_up_it_is_given(tmp_path, cifar_dir):
    # 80 steps at batch 64: drops at 40 and 60; 10 iterations at batch 128 are 20 steps at 0.01 * 64/128.
    paper = dict(recipe="cifar_paper", lr_scaling="linear", steps=80, epochs=None)
    run = trainer.Trainer(CONFIG, _settings(tmp_path / "run", cifar_dir, options={"warmup_iterations": 10}, **paper),
                          one_device_strategy())
    assert run.schedule.boundaries == (20, 40, 60)
    assert run.schedule.values == pytest.approx((0.005, 0.05, 0.005, 0.0005))
    with pytest.raises(ValueError, match=r"--warmup_iterations=20 \(40 steps\) must end before"):
        trainer.Trainer(CONFIG, _settings(tmp_path / "run2", cifar_dir, options={"warmup_iterations": 20}, **paper),
                        one_device_strategy())


def test_run_json_lets_predict_and_export_use_the_run_without_flags(finished_run, cifar_dir, tmp_path, capsys):
    from keras_preresnet import export
    import export_testing
    from keras_preresnet import predict, preprocessing, runs
    from keras_preresnet.datasets import CIFAR10_CLASSES

    model_dir, _ = finished_run
    record = runs.read_run(model_dir)
    assert record["class_names"] == list(CIFAR10_CLASSES)
    assert record["preprocessing"] == {"name": "cifar10", "image_size": 32}
    assert record["network"]["depth"] == 8 and record["network"]["classes"] == 10
    model, _ = runs.build_from_run(model_dir)
    trained = network.build_network(CONFIG, 10, depth=8)
    trained.load_weights(str(model_dir / "best.weights.h5"))
    files = export_testing.write_cifar_images(cifar_dir, tmp_path / "images", count=3)
    x = np.stack([preprocessing.preprocess(predict.read_image(f), "cifar10") for f in files])
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities, tf.nn.softmax(trained.predict(x, verbose=0)).numpy(), atol=1e-5)

    out = tmp_path / "labels.json"
    assert predict.main(files + [f"--model={model_dir}", f"--output={out}"]) == 0
    rows = json.loads(out.read_text())["predictions"]
    assert [row["predictions"][0]["label"] for row in rows] == [CIFAR10_CLASSES[i] for i in probabilities.argmax(-1)]
    servable = export.build(str(model_dir))
    assert servable.labels == CIFAR10_CLASSES and servable.preprocessing == "cifar10"
    np.testing.assert_allclose(servable.model.predict(x, verbose=0), probabilities, atol=1e-6)


def test_validation_trains_on_the_split_and_tests_on_the_held_out_training_images(tmp_path, cifar_dir):
    from keras_preresnet.datasets import load_cifar

    run = trainer.Trainer(CONFIG, _settings(tmp_path, cifar_dir, train_examples=200, validation=True), one_device_strategy())
    assert (run.train_source.num_examples, run.test_source.num_examples) == (180, 20)
    _, labels = load_cifar(cifar_dir, "cifar10", "train")
    assert [int(label) for _, label in run.test_source.dataset] == list(labels[180:200])
    assert run.schedule.steps_per_epoch == 180 // 64
    without = dataclasses.replace(CONFIG, validation_fraction=None)
    with pytest.raises(ValueError, match="has no validation split of its paper; leave out --validation"):
        trainer.Trainer(without, _settings(tmp_path, cifar_dir, validation=True), one_device_strategy())
