"""export.servable: model names, labels, weights and the serving preprocessing."""

import json
import pickle

import numpy as np
import pytest
import tensorflow as tf

import export_testing
import keras_preresnet
from keras_preresnet.export import servable as servable_lib
from keras_preresnet import defaults, preprocessing
from keras_preresnet.datasets import CIFAR10_CLASSES, load_cifar


def test_resolve_architecture_accepts_public_names_and_keys():
    assert servable_lib.resolve_architecture("PreActResNet200") == "preact_resnet200"
    assert servable_lib.resolve_architecture("preact_resnet164") == "preact_resnet164"
    assert servable_lib.resolve_architecture("resnet20") == "resnet20"


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Unknown model 'PreActResNet7'.*PreActResNet200"):
        servable_lib.resolve_architecture("PreActResNet7")


def test_cifar10_labels_are_the_datasets_label_names(cifar_dir):
    with open(cifar_dir / "cifar-10-batches-py" / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    assert CIFAR10_CLASSES == tuple(meta["label_names"])


def test_build_uses_layout_preprocessing_and_dataset_labels():
    servable = servable_lib.build("ResNet20")
    assert servable.name == "ResNet20"
    assert servable.preprocessing == "cifar10"
    assert servable.labels == CIFAR10_CLASSES
    assert servable.image_size == 32


def test_label_file_sets_the_number_of_classes(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    servable = servable_lib.build("resnet20", labels=labels, name="pets")
    assert servable.model.output_shape == (None, 3)
    assert servable.labels == ("cat", "dog", "bird")
    assert servable.name == "pets"


@pytest.mark.parametrize("classes, labels", [("3", ("0", "1", "2")), (10, CIFAR10_CLASSES)])
def test_classes_given_as_a_number_set_the_head_and_number_the_labels(classes, labels):
    servable = servable_lib.build("resnet20", labels=classes)
    assert servable.model.output_shape == (None, len(labels))
    assert servable.labels == labels


def test_label_file_with_blank_line_is_rejected(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n\ndog\n")
    with pytest.raises(ValueError, match=r"lines \[2\] are blank"):
        servable_lib.read_labels(labels)


def test_weights_that_do_not_fit_the_model_are_a_clear_error(tmp_path):
    weights = tmp_path / "tiny.weights.h5"
    keras_preresnet.build_resnet(8, unit="full_preactivation").save_weights(weights)
    with pytest.raises(ValueError, match="Could not load the weights file"):
        servable_lib.build("ResNet20", weights=str(weights))


def test_label_count_must_match_the_classifier():
    model = keras_preresnet.build_resnet(8, unit="full_preactivation")
    with pytest.raises(ValueError, match="10 output classes but 2 labels"):
        servable_lib.Servable(model, "tiny", ("a", "b"), "cifar10")


def test_cifar_preprocessing_normalises_a_32x32_image_without_resampling(cifar_dir):
    image = load_cifar(cifar_dir, "cifar10", "test")[0][0]
    servable = export_testing.tiny_servable()
    expected = (image.astype(np.float32) - np.float32(defaults.CIFAR10_MEAN)) / np.float32(defaults.CIFAR10_STD)
    np.testing.assert_allclose(servable.preprocess(tf.constant(image)).numpy(), expected, atol=1e-5)


def test_cifar_preprocessing_resizes_other_sizes_to_the_model_input():
    servable = export_testing.tiny_servable()
    out = servable.preprocess(tf.zeros([50, 70, 3], tf.uint8))
    assert out.shape == (32, 32, 3)


def test_imagenet_preprocessing_is_the_packages_preprocess_input():
    servable = servable_lib.Servable(
        keras_preresnet.build_resnet(18, layout="imagenet", input_shape=(64, 64, 3), units_per_stage=(1, 1, 1, 1)),
        "small", [name for _, name in preprocessing.imagenet_classes()], "imagenet",
    )
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    expected = preprocessing.preprocess_input(image, image_size=64, resize_size=round(64 * 256 / 224))
    np.testing.assert_allclose(servable.preprocess(tf.constant(image)).numpy(), expected, atol=1e-6)


def test_weights_of_a_training_run_bring_its_labels_and_preprocessing(tmp_path):
    from keras_preresnet import runs

    run = tmp_path / "run"
    run.mkdir()
    network = runs.network_record(depth=20, unit="original", shortcut="identity", layout="cifar", image_size=32,
                                  classes=3)
    (run / runs.RUN_JSON).write_text(json.dumps(dict(network=network, class_names=["cat", "dog", "bird"],
                                                     preprocessing=runs.preprocessing_record("cifar100", 32))))
    keras_preresnet.ResNet20(classes=3).save_weights(run / runs.BEST_WEIGHTS)
    servable = servable_lib.build("ResNet20", weights=str(run / runs.BEST_WEIGHTS))
    assert servable.labels == ("cat", "dog", "bird") and servable.preprocessing == "cifar100"
    assert servable.model.output_shape == (None, 3)
