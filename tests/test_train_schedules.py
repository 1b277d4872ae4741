"""Learning-rate schedules: the recipes' steps stay as they are; cosine decay with a linear warm-up."""

import dataclasses

import pytest

from keras_preresnet.train import configs, options, schedules

RECIPE = configs.RECIPES["cifar_public_code"]


def _cosine(warmup_epochs, batch=128):
    recipe = configs.resolve_schedule(RECIPE, 50_000, batch)
    return schedules.resolve(recipe, options.Options(lr_schedule="cosine", warmup_epochs=warmup_epochs))


def test_the_step_schedule_is_the_recipe_itself():
    recipe = configs.resolve_schedule(RECIPE, 50_000, 128)
    assert schedules.resolve(recipe, options.Options()) is recipe
    assert schedules.record(recipe) == {"learning_rates": list(recipe.values), "lr_boundaries": list(recipe.boundaries)}


def test_cosine_warms_up_linearly_then_follows_half_a_cosine():
    schedule = _cosine(warmup_epochs=10)  # 390 steps per epoch, 200 epochs
    warmup, total = 10 * 390, 200 * 390  # 74,100 decay steps: a quarter and a half are whole steps
    assert (schedule.warmup_steps, schedule.total_steps, schedule.peak) == (warmup, total, pytest.approx(0.1))
    expected = {
        0: 0.0,
        warmup // 2: 0.1 * (warmup // 2) / warmup,
        warmup: 0.1,
        warmup + (total - warmup) // 2: 0.05,  # half-way through the decay: cos(pi / 2) = 0
        warmup + (total - warmup) // 4: 0.1 * (1 + 2 ** -0.5) / 2,  # a quarter: cos(pi / 4)
        total: 0.0,
    }
    keras_rate = schedules.keras_schedule(schedule)
    for step, rate in expected.items():
        assert schedule.learning_rate(step) == pytest.approx(rate, abs=1e-9), step
        # The optimiser's rate is the one the run reports.
        assert float(keras_rate(step)) == pytest.approx(rate, rel=1e-5, abs=1e-7), step


def test_cosine_starts_from_the_scaled_base_rate_and_may_skip_the_warm_up():
    schedule = _cosine(warmup_epochs=0, batch=256)
    assert schedule.peak == pytest.approx(0.2) and schedule.learning_rate(0) == pytest.approx(0.2)
    assert float(schedules.keras_schedule(schedule)(0)) == pytest.approx(0.2)
    # The paper's warm-up recipe: the cosine starts from its base rate, not from its 0.01 warm-up rate.
    warm = configs.resolve_schedule(configs.RECIPES["cifar_paper_warmup"], 50_000, 128)
    assert schedules.resolve(warm, options.Options(lr_schedule="cosine")).peak == pytest.approx(0.1)


def test_a_warm_up_as_long_as_the_run_is_refused():
    recipe = configs.resolve_schedule(dataclasses.replace(RECIPE, total=2), 50_000, 128)
    with pytest.raises(ValueError, match="--warmup_epochs=2 .* shorter than the run"):
        schedules.resolve(recipe, options.Options(lr_schedule="cosine", warmup_epochs=2))
