"""Named configs and the recipes' schedules (docs/training.md)."""

import pytest

import keras_preresnet
from keras_preresnet.train import configs


def test_main_comparisons_exist_for_both_datasets():
    for dataset in ("cifar10", "cifar100"):
        for prefix in ("resnet", "preact_resnet"):
            for depth in (110, 164, 1001):
                config = configs.get_config(f"{dataset}_{prefix}{depth}")
                assert config.dataset == dataset and config.depth == depth
                assert config.unit == ("full_preactivation" if prefix == "preact_resnet" else "original")


def test_ablations_cover_table1_and_table2_on_110_and_164():
    for depth in (110, 164):
        for suffix in ("constant_scaling_0.5", "exclusive_gating_bg-6", "exclusive_gating_bg-7",
                       "shortcut_only_gating_bg0", "shortcut_only_gating_bg-6", "conv1x1", "dropout_0.5",
                       "bn_after_addition", "relu_before_addition", "relu_only_preactivation"):
            assert f"cifar10_resnet{depth}_{suffix}" in configs.CONFIGS
    gating = configs.get_config("cifar10_resnet110_exclusive_gating_bg-6")
    assert gating.shortcut == "exclusive_gating" and gating.shortcut_options == {"gate_bias": -6.0}
    assert gating.unit == "original" and gating.paper_error == "8.70"
    assert configs.get_config("cifar10_resnet164_relu_only_preactivation").paper_error == "5.91"


def test_imagenet_configs_use_the_released_checkpoint_recipe():
    for name in ("imagenet_preact_resnet200", "imagenet_resnet50", "imagenet_preact_resnet50",
                 "imagenet_resnet152", "imagenet_preact_resnet152"):
        config = configs.get_config(name)
        assert config.recipe == "imagenet" and config.batch_size == 256 and config.image_size == 224
    recipe = configs.RECIPES["imagenet"]
    assert recipe.nesterov and recipe.total == 90 and recipe.boundaries == (30, 60)
    assert recipe.weight_decay == 1e-4 and recipe.momentum == 0.9


def test_every_config_builds_a_network_of_its_kind():
    # One small network per distinct (unit, shortcut, form, layout): the arguments are valid builder input.
    seen = set()
    for config in configs.CONFIGS.values():
        key = (config.unit, config.shortcut, str(config.shortcut_options), config.form, config.layout,
               config.projection)
        if key in seen:
            continue
        seen.add(key)
        small = {"basic": 8, "bottleneck": 11, "one_layer": 5, None: 18}[config.form]
        size = 32
        model = keras_preresnet.build_resnet(
            small, unit=config.unit, shortcut=config.shortcut, shortcut_options=config.shortcut_options,
            layout=config.layout, form=config.form, projection=config.projection, input_shape=(size, size, 3),
            classes=10,
        )
        assert model.output_shape == (None, 10)
    assert len(seen) > 15


def test_unknown_config_names_close_matches():
    with pytest.raises(ValueError, match="Unknown config 'cifar10_preact_resnet165'.*cifar10_preact_resnet164"):
        configs.get_config("cifar10_preact_resnet165")


def test_paper_schedule_at_reference_batch_is_32k_48k_64k_with_warmup_for_110():
    schedule = configs.resolve_schedule(configs.RECIPES[configs.get_config("cifar10_resnet110").recipe], 50_000, 128)
    assert schedule.total_steps == 64_000
    assert schedule.boundaries == (400, 32_000, 48_000)
    assert schedule.values == pytest.approx((0.01, 0.1, 0.01, 0.001))
    assert schedule.learning_rate(399) == pytest.approx(0.01)
    assert schedule.learning_rate(400) == pytest.approx(0.1)
    assert schedule.learning_rate(47_999) == pytest.approx(0.01)
    assert schedule.learning_rate(48_000) == pytest.approx(0.001)
    assert schedule.epochs == 165  # 390 steps per epoch: the 64k-th step falls in epoch 165


def test_warmup_only_for_110_1001_and_1202():
    assert configs.get_config("cifar10_preact_resnet1001").recipe == "cifar_paper_warmup"
    assert configs.get_config("cifar10_resnet1202").recipe == "cifar_paper_warmup"
    assert configs.get_config("cifar10_plain110").recipe == "cifar_paper_warmup"
    assert configs.get_config("cifar100_preact_resnet164").recipe == "cifar_paper"
    assert configs.get_config("cifar10_resnet56").recipe == "cifar_paper"


def test_resnet_paper_table6_configs():
    for depth, error in ((20, "8.75"), (32, "7.51"), (44, "7.17"), (56, "6.97")):
        resnet, plain = configs.get_config(f"cifar10_resnet{depth}"), configs.get_config(f"cifar10_plain{depth}")
        assert (resnet.unit, plain.unit, resnet.depth, plain.depth) == ("original", "plain", depth, depth)
        assert resnet.form == plain.form == "basic" and resnet.layout == plain.layout == "cifar"
        assert resnet.paper_error == error and plain.paper_error == "-"
        assert resnet.validation_fraction == plain.validation_fraction == 0.1  # the paper's 45k/5k split
        assert resnet.batch_size == 128 and resnet.augmentation == "cifar"
    table6 = configs.TABLES["resnet_table6"]
    assert [table6.published(row) for row in table6.rows if row.panel == "ResNet"] == [
        "8.75", "7.51", "7.17", "6.97", "6.43 (6.61±0.16)", "7.93"]
    assert configs.get_config("cifar10_resnet110").paper_error == "6.61"  # Identity Mappings' figure
    assert "resnet_table6" in configs.tables_of("cifar10_plain110")


def test_resnet_paper_imagenet_configs_are_plain_and_options_a_b_c():
    from keras_preresnet.train import network

    params = {}
    for name in ("imagenet_plain34", "imagenet_resnet34_A", "imagenet_resnet34_B", "imagenet_resnet34_C"):
        config = configs.get_config(name)
        assert config.eval_crop == "ten_crop" and config.augmentation == "imagenet_scale"
        model = network.build_network(config, 1000, image_size=64)
        params[name] = sum(int(w.numpy().size) for w in model.trainable_weights)
    # Option A adds no parameters to the plain net, B the three widening projections, C one per unit.
    assert params["imagenet_plain34"] == params["imagenet_resnet34_A"] == 21_623_848
    assert params["imagenet_resnet34_A"] < params["imagenet_resnet34_B"] == 21_797_672 < params["imagenet_resnet34_C"]
    assert [configs.get_config(n).paper_error for n in params] == ["28.54", "25.03", "24.52", "24.19"]


def test_public_code_schedule_drops_at_epochs_81_and_122_with_nesterov():
    recipe = configs.RECIPES["cifar_public_code"]
    assert recipe.nesterov
    schedule = configs.resolve_schedule(recipe, 50_000, 128)
    assert schedule.total_steps == 200 * 390
    # fb.resnet.torch's train.lua counts epochs from 1: epoch 81 is the first after 80 finished epochs.
    assert schedule.boundaries == (80 * 390, 121 * 390)
    assert schedule.learning_rate(80 * 390 - 1) == pytest.approx(0.1)
    assert schedule.learning_rate(80 * 390) == pytest.approx(0.01)


def test_linear_scaling_rule_and_iteration_schedules_keep_images_seen():
    recipe = configs.RECIPES["cifar_paper"]
    schedule = configs.resolve_schedule(recipe, 50_000, 256)
    assert schedule.values[0] == pytest.approx(0.2)
    assert schedule.total_steps == 32_000 and schedule.boundaries == (16_000, 24_000)
    unscaled = configs.resolve_schedule(recipe, 50_000, 256, lr_scaling="none")
    assert unscaled.values[0] == pytest.approx(0.1)


def test_epoch_schedule_keeps_epochs_when_batch_changes():
    schedule = configs.resolve_schedule(configs.RECIPES["imagenet"], 1_281_167, 512)
    assert schedule.steps_per_epoch == 1_281_167 // 512
    assert schedule.boundaries == (30 * schedule.steps_per_epoch, 60 * schedule.steps_per_epoch)
    assert schedule.values[0] == pytest.approx(0.2)


def test_epochs_override_keeps_the_fractions_of_the_schedule():
    schedule = configs.resolve_schedule(configs.RECIPES["cifar_paper_warmup"], 5_000, 100, epochs=10)
    assert schedule.total_steps == 500
    # Drops at 50% and 75% of the run, warm-up 400/64000 of it.
    assert schedule.boundaries == (max(1, round(500 * 400 / 64_000)), 250, 375)


def test_an_absolute_warm_up_keeps_its_length_when_the_run_is_shortened():
    # The paper's ResNet-110 warm-up, 400 iterations at 0.01, in a 1,560-iteration run: the drops keep
    # their fractions, the warm-up does not shrink to 400/64k of the run.
    recipe = configs.RECIPES["cifar_paper"]
    schedule = configs.resolve_schedule(recipe, 5_000, 128, steps=1_560, warmup_iterations=400)
    assert schedule.boundaries == (400, 780, 1_170)
    assert schedule.values == pytest.approx((0.01, 0.1, 0.01, 0.001))
    # Iterations count at the recipe's batch of 128: at batch 64 the warm-up takes twice the steps, at
    # the linearly scaled rate.
    half = configs.resolve_schedule(recipe, 5_000, 64, steps=3_120, warmup_iterations=400)
    assert half.boundaries[0] == 800 and half.values[0] == pytest.approx(0.005)
    # 0 drops the recipe's own warm-up; None keeps it (compressed with the run).
    assert configs.resolve_schedule(configs.RECIPES["cifar_paper_warmup"], 5_000, 128, steps=1_560,
                                    warmup_iterations=0).boundaries == (780, 1_170)
    assert configs.resolve_schedule(configs.RECIPES["cifar_paper_warmup"], 5_000, 128,
                                    steps=1_560).boundaries == (round(1_560 * 400 / 64_000), 780, 1_170)


def test_a_warm_up_past_the_first_drop_is_refused():
    with pytest.raises(ValueError, match=r"--warmup_iterations=800 \(800 steps\) must end before the first "
                                         r"learning-rate drop \(step 780\)"):
        configs.resolve_schedule(configs.RECIPES["cifar_paper"], 5_000, 128, steps=1_560, warmup_iterations=800)


def test_batch_larger_than_dataset_is_refused():
    with pytest.raises(ValueError, match="larger than the training set"):
        configs.resolve_schedule(configs.RECIPES["cifar_paper"], 100, 128)
