"""keras_preresnet.runs: a training run's folder rebuilt as a model from its run.json."""

import json

import numpy as np
import pytest

import keras_preresnet as kp
from keras_preresnet import runs


def _run(folder, classes=3, names=("cat", "dog", "bird"), **extra):
    folder.mkdir(exist_ok=True)
    record = dict(network=runs.network_record(depth=8, unit="full_preactivation", shortcut="identity",
                                              layout="cifar", image_size=32, classes=classes),
                  class_names=list(names) if names else None,
                  preprocessing=runs.preprocessing_record("cifar10", 32), **extra)
    (folder / runs.RUN_JSON).write_text(json.dumps(record))
    return folder


def test_run_is_rebuilt_with_its_best_weights(tmp_path):
    folder = _run(tmp_path / "run")
    model = kp.build_resnet(8, classes=3, classifier_activation=None)
    model.save_weights(folder / runs.LAST_WEIGHTS)
    best = kp.build_resnet(8, classes=3)
    best.save_weights(folder / runs.BEST_WEIGHTS)
    rebuilt, record = runs.build_from_run(folder)
    x = np.random.RandomState(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), best.predict(x, verbose=0), atol=1e-6)
    assert runs.labels(record) == ("cat", "dog", "bird")
    assert runs.labels(json.loads((_run(tmp_path / "other", names=None) / runs.RUN_JSON).read_text())) == ("0", "1", "2")


def test_preprocessing_of_a_training_set():
    assert runs.preprocessing_record("imagenet2012", 224) == {"name": "imagenet", "image_size": 224}
    assert runs.preprocessing_record("cifar100", 32) == {"name": "cifar100", "image_size": 32}


def test_unusable_runs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run"):
        runs.read_run(tmp_path)
    (tmp_path / runs.RUN_JSON).write_text(json.dumps({"config": "x", "classes": 10}))
    with pytest.raises(ValueError, match=r"lacks \[.network., .class_names., .preprocessing.\]. The run was started"):
        runs.read_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="train an epoch first"):
        runs.build_from_run(_run(tmp_path / "empty"))
    with pytest.raises(ValueError, match="Unknown network arguments"):
        runs.network_record(depth=8, colour="red")
