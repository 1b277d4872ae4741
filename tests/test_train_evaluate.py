"""Evaluation: top-1/top-5 error of weights, single centre crop and ten crops, on an image folder."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet.datasets import load_cifar
from keras_preresnet.train import configs, data, distribute, network
from keras_preresnet.train.evaluate import evaluate_weights

CONFIG = configs.get_config("imagenet_preact_resnet50")
CLASSES = 3


@pytest.fixture(scope="module")
def folder_and_weights(tmp_path_factory, cifar_dir):
    """Real CIFAR images upscaled to 80x96 in an image folder, and the weights of a small ImageNet-layout net."""
    root = tmp_path_factory.mktemp("imagenet_like")
    images, labels = load_cifar(cifar_dir, "cifar10", "test")
    keep = np.flatnonzero(labels < CLASSES)[:12]
    big = tf.cast(tf.image.resize(images[keep].astype(np.float32), [80, 96]), tf.uint8).numpy()
    for i, (image, label) in enumerate(zip(big, labels[keep])):
        folder = root / "test" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        tf.io.write_file(str(folder / f"{i:03d}.png"), tf.io.encode_png(image))
    (root / "train").mkdir()
    keras.utils.set_random_seed(3)
    model = network.build_network(CONFIG, CLASSES, depth=18, image_size=64)
    path = str(root / "net.weights.h5")
    model.save_weights(path)
    return root, path, model


def _manual(model, root, transform):
    source = data.load_source(str(root), "imagenet2012", "test")
    probabilities, truth = [], []
    for image, label in source.dataset:
        x, _ = transform(image, label)
        x = x if x.shape.rank == 4 else x[tf.newaxis]
        probabilities.append(tf.nn.softmax(model(x, training=False)).numpy().mean(axis=0))
        truth.append(int(label))
    probabilities, truth = np.array(probabilities), np.array(truth)
    top1 = np.mean(probabilities.argmax(1) == truth)
    counts = np.zeros((CLASSES, CLASSES), np.int64)
    for true, predicted in zip(truth, probabilities.argmax(1)):
        counts[true, predicted] += 1
    return 100 * (1 - top1), len(truth), counts


@pytest.mark.parametrize("crop,size,resize", [("center", 64, 72), ("ten_crop", 64, 72), ("center", 80, 80)])
def test_evaluation_matches_a_direct_computation(folder_and_weights, crop, size, resize):
    root, path, _ = folder_and_weights
    model = network.build_network(CONFIG, CLASSES, depth=18, image_size=size)
    model.load_weights(path)  # the same weights at this input size
    result = evaluate_weights(CONFIG, path, str(root), crop=crop, image_size=size, resize=resize, depth=18,
                              num_classes=CLASSES, batch_size=5, strategy=distribute.make_strategy("one_device"))
    transform = data.eval_transform("imagenet", "imagenet2012", size, resize, crop, encoded=True)
    expected, count, counts = _manual(model, root, transform)
    assert result["images"] == count == 12  # padding to whole batches of 5 adds nothing to the count
    assert result["top1_error"] == pytest.approx(expected, abs=1e-4)
    assert result["top5_error"] == 0.0  # three classes: the truth is always in the top five
    assert (result["crop"], result["image_size"], result["resize"]) == (crop, size, resize)
    # The confusion matrix is the hand count of (true, predicted) pairs; padding images count nowhere.
    np.testing.assert_array_equal(result["confusion"], counts)
    assert [row["support"] for row in result["per_class"]] == counts.sum(1).tolist()


def test_data_with_more_classes_than_the_model_is_refused(folder_and_weights):
    root, path, _ = folder_and_weights
    with pytest.raises(ValueError, match="3 classes but the model has 2"):
        evaluate_weights(CONFIG, path, str(root), depth=18, num_classes=2, image_size=64,
                         strategy=distribute.make_strategy("one_device"))
