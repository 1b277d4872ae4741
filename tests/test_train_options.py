"""Training options beside the papers' recipes: off by default, validated, overridable by flags."""

import dataclasses

import pytest
from absl import flags

from keras_preresnet.train import configs, options


def test_every_paper_config_trains_with_every_option_off():
    off = options.Options()
    assert (off.label_smoothing, off.lr_schedule, off.ema_decay, off.mixup_alpha, off.cutmix_factor,
            off.randaugment_ops, off.drop_path_rate) == (0.0, "step", 0.0, 0.0, 0.0, 0, 0.0)
    assert all(config.options == off for config in configs.CONFIGS.values())


@pytest.mark.parametrize("field, value, message", [
    ("label_smoothing", 1.0, "--label_smoothing must be a number >= 0 and < 1; received 1.0"),
    ("lr_schedule", "linear", "--lr_schedule must be one of"),
    ("warmup_epochs", 5, "--warmup_epochs applies to --lr_schedule=cosine"),
    ("warmup_iterations", -1, "--warmup_iterations must be a number >= 0"),
    ("ema_decay", 1.0, "--ema_decay must be a number >= 0 and < 1"),
    ("mixup_alpha", -1, "--mixup_alpha must be a number >= 0"),
    ("randaugment_ops", 1.5, "--randaugment_ops must be an integer >= 0"),
    ("randaugment_factor", 2.0, "--randaugment_factor must be a number >= 0 and <= 1"),
    ("drop_path_rate", 1.0, "--drop_path_rate must be a number >= 0 and < 1"),
])
def test_bad_values_are_refused_naming_the_flag(field, value, message):
    with pytest.raises(ValueError, match=message):
        options.resolve(options.Options(), {field: value})


def test_the_absolute_warm_up_belongs_to_the_step_schedule():
    assert options.resolve(options.Options(), {"warmup_iterations": 400}).warmup_iterations == 400
    with pytest.raises(ValueError, match="--warmup_iterations applies to the step recipes"):
        options.resolve(options.Options(), {"warmup_iterations": 400, "lr_schedule": "cosine"})


def test_overrides_replace_only_what_they_set():
    base = dataclasses.replace(options.Options(), label_smoothing=0.1, drop_path_rate=0.2)
    resolved = options.resolve(base, {"label_smoothing": None, "drop_path_rate": 0.0, "mixup_alpha": 0.2})
    assert (resolved.label_smoothing, resolved.drop_path_rate, resolved.mixup_alpha) == (0.1, 0.0, 0.2)
    with pytest.raises(ValueError, match="Unknown training options"):
        options.resolve(base, {"dropout": 0.5})


def test_each_option_is_a_flag_of_the_command_line():
    from keras_preresnet.train import __main__ as cli

    values = dict(label_smoothing="0.1", lr_schedule="cosine", warmup_epochs="2", ema_decay="0.999",
                  mixup_alpha="0.2", cutmix_factor="1", randaugment_ops="2", randaugment_factor="0.3",
                  drop_path_rate="0.1")
    # --warmup_iterations belongs to the step schedule, the others to cosine: it is checked on its own.
    assert set(values) | {"warmup_iterations"} == set(options.FIELDS)
    argv = ["train", "--config=cifar10_preact_resnet110", "--data_dir=d", "--model_dir=m"]
    try:
        flags.FLAGS(argv + [f"--{k}={v}" for k, v in values.items()])
        settings = cli.settings_from_flags()
    finally:
        flags.FLAGS.unparse_flags()
    resolved = options.resolve(options.Options(), settings.options)
    assert resolved == options.Options(label_smoothing=0.1, lr_schedule="cosine", warmup_epochs=2.0, ema_decay=0.999,
                                       mixup_alpha=0.2, cutmix_factor=1.0, randaugment_ops=2,
                                       randaugment_factor=0.3, drop_path_rate=0.1)
    try:
        flags.FLAGS(argv + ["--warmup_iterations=400"])
        assert cli.settings_from_flags().options["warmup_iterations"] == 400
    finally:
        flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    try:
        assert all(value is None for value in cli.settings_from_flags().options.values())
    finally:
        flags.FLAGS.unparse_flags()


def test_the_trainer_refuses_a_bad_option_before_writing_anything(tmp_path, cifar_dir):
    from keras_preresnet.train import distribute, trainer

    settings = trainer.Settings(model_dir=str(tmp_path / "run"), data_dir=str(cifar_dir),
                                options={"label_smoothing": 1.5})
    with pytest.raises(ValueError, match="--label_smoothing must be a number >= 0 and < 1; received 1.5"):
        trainer.Trainer(configs.get_config("cifar10_preact_resnet110"), settings,
                        distribute.make_strategy("one_device"))
    assert not (tmp_path / "run" / "checkpoints").exists()
