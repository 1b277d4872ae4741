"""Input pipelines: sources, the paper's augmentation, resumable epochs and padded test batches."""

import os
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from keras_preresnet import defaults
from keras_preresnet.datasets import load_cifar
from keras_preresnet.preprocessing import preprocess_input
from keras_preresnet.train import data


class _Context:
    """A one-pipeline, one-replica tf.distribute.InputContext."""

    num_input_pipelines = 1
    input_pipeline_id = 0

    def get_per_replica_batch_size(self, global_batch):
        return global_batch


def _array_source(images, labels):
    return data.Source(tf.data.Dataset.from_tensor_slices((images, labels)), len(labels), 10, False, "arrays")


@pytest.fixture(scope="module")
def cifar_images(cifar_dir):
    images, labels = load_cifar(cifar_dir, "cifar10", "test")
    return images[:64], labels[:64]


def _write_image_folder(root, images, labels, split="train", classes=("airplane", "automobile")):
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, split, classes[label])
        os.makedirs(folder, exist_ok=True)
        tf.io.write_file(os.path.join(folder, f"{i:04d}.png"), tf.io.encode_png(image))


def test_cifar_pickle_source_reads_the_real_images(cifar_dir):
    source = data.load_source(str(cifar_dir), "cifar10", "test")
    images, labels = load_cifar(cifar_dir, "cifar10", "test")
    assert source.num_examples == len(labels) == 1000 and source.num_classes == 10 and not source.encoded
    first = next(iter(source.dataset))
    np.testing.assert_array_equal(first[0].numpy(), images[0])
    assert data.load_source(str(cifar_dir), "cifar10", "train", limit=100).num_examples == 100


def test_cifar_eval_is_per_channel_normalisation(cifar_images):
    images, labels = cifar_images
    transform = data.eval_transform("cifar", "cifar10", 32, 32)
    x, _ = transform(tf.constant(images[0]), labels[0])
    expected = (images[0].astype(np.float32) - np.array(defaults.CIFAR10_MEAN)) / np.array(defaults.CIFAR10_STD)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_cifar_train_crop_is_a_4px_shifted_window_of_the_zero_padded_normalised_image(cifar_images):
    images, labels = cifar_images
    transform = data.train_transform("cifar", "cifar100", 32, encoded=False)
    normalised = (images[1].astype(np.float32) - np.array(defaults.CIFAR100_MEAN)) / np.array(defaults.CIFAR100_STD)
    padded = np.pad(normalised, [(4, 4), (4, 4), (0, 0)])
    candidates = [padded[t:t + 32, l:l + 32] for t in range(9) for l in range(9)]
    candidates += [c[:, ::-1] for c in candidates]
    shifts = set()
    for position in range(12):
        x, _ = transform(tf.constant(images[1]), labels[1], data.augmentation_key(0, 0, position))
        errors = [np.abs(x.numpy() - c).max() for c in candidates]
        assert min(errors) < 1e-4
        shifts.add(int(np.argmin(errors)))
    assert len(shifts) > 3  # the crop and the flip are random


def test_imagenet_train_augmentation_gives_normalised_224_crops(cifar_images):
    images, labels = cifar_images
    big = tf.image.resize(images[:2].astype(np.float32), [300, 260]).numpy().astype(np.uint8)
    for augmentation in ("imagenet", "imagenet_scale"):
        transform = data.train_transform(augmentation, "imagenet2012", 224, encoded=False)
        x, label = transform(tf.constant(big[0]), labels[0], data.augmentation_key(0, 0, 0))
        assert x.shape == (224, 224, 3) and np.all(np.isfinite(x.numpy())) and label == labels[0]
        # Normalised by the ImageNet mean/std: values in a few std of 0, not on the 0-255 scale.
        assert -5 < float(tf.reduce_mean(x)) < 5 and float(tf.reduce_max(tf.abs(x))) < 12


def test_color_jitter_and_lighting_change_colours_but_keep_grey_images_grey_under_saturation(cifar_images):
    grey = tf.fill([8, 8, 3], 0.5)
    colour = tf.constant(cifar_images[0][0] / 255.0, tf.float32)
    changes = []
    for position in range(8):
        key = data.augmentation_key(1, 0, position)
        jittered = data.color_jitter(grey, key).numpy()
        np.testing.assert_allclose(jittered[..., 0], jittered[..., 1], atol=1e-6)
        jittered = data.color_jitter(colour, key).numpy()
        np.testing.assert_array_equal(jittered, data.color_jitter(colour, key).numpy())  # a function of the key
        changes.append(np.abs(jittered - colour.numpy()).mean())
    # Factors 1 ± 0.4 move a real image's pixels by a few percent on average; strength 0 is the identity.
    assert min(changes) > 0.002 and max(changes) > 0.02
    np.testing.assert_allclose(data.color_jitter(colour, key, strength=0.0).numpy(), colour.numpy(), atol=1e-6)
    lit = data.lighting(grey, key)
    shift = (lit - grey).numpy()
    assert np.all(np.abs(shift - shift[0, 0]) < 1e-6) and np.abs(shift[0, 0]).max() > 0


def test_random_sized_crop_covers_8_to_100_percent_with_bounded_aspect():
    image = tf.zeros([200, 300, 3], tf.uint8)
    for position in range(20):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.zeros([1, 0, 4]), seed=data.augmentation_key(0, 0, position), min_object_covered=0.0,
            aspect_ratio_range=data.CROP_ASPECT, area_range=data.CROP_AREA, max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        height, width = int(size[0]), int(size[1])
        assert 0.07 <= height * width / 60_000 <= 1.0
    assert data.random_sized_crop(image, 64, data.augmentation_key(0, 0, 0)).shape == (64, 64, 3)


def test_imagenet_center_crop_is_preprocess_input_and_ten_crop_holds_its_mirror(cifar_images):
    images, labels = cifar_images
    image = tf.image.resize(images[3].astype(np.float32), [70, 90]).numpy().astype(np.uint8)
    center = data.eval_transform("imagenet", "imagenet2012", 48, 56, "center")(tf.constant(image), 0)[0]
    np.testing.assert_allclose(center.numpy(), preprocess_input(image, image_size=48, resize_size=56), atol=1e-5)
    crops = data.eval_transform("imagenet", "imagenet2012", 48, 56, "ten_crop")(tf.constant(image), 0)[0].numpy()
    assert crops.shape == (10, 48, 48, 3)
    np.testing.assert_allclose(crops[4], center.numpy(), atol=1e-5)
    np.testing.assert_allclose(crops[9], center.numpy()[:, ::-1], atol=1e-5)
    resized = preprocess_input(image, image_size=None, resize_size=56)
    np.testing.assert_allclose(crops[0], resized[:48, :48], atol=1e-5)
    np.testing.assert_allclose(crops[3], resized[-48:, -48:], atol=1e-5)


def test_ten_crop_is_refused_for_cifar():
    with pytest.raises(ValueError, match="Ten-crop"):
        data.eval_transform("cifar", "cifar10", 32, 32, "ten_crop")


def test_resumed_epoch_yields_exactly_the_remaining_augmented_batches(cifar_images):
    images, labels = cifar_images
    source = _array_source(images, labels)
    augment = data.train_transform("cifar", "cifar10", 32, encoded=False)

    def epoch(seed=5, number=3, start_step=0):
        return list(data.train_dataset_fn(source, augment, 8, steps=7, epoch=number, start_step=start_step,
                                          seed=seed)(_Context()))

    full, resumed = epoch(), epoch(start_step=4)
    assert len(full) == 7 and len(resumed) == 3
    for a, b in zip(full[4:] + full, resumed + epoch()):  # also: the same epoch again is the same, bit for bit
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(full[0][1].numpy(), epoch(number=4)[0][1].numpy())  # another order
    # The same order with another seed is augmented differently.
    other_seed = data.train_dataset_fn(_array_source(images[:8], labels[:8]), augment, 8, steps=1, epoch=3, seed=6)
    same_seed = data.train_dataset_fn(_array_source(images[:8], labels[:8]), augment, 8, steps=1, epoch=3, seed=5)
    a, b = next(iter(other_seed(_Context()))), next(iter(same_seed(_Context())))
    assert not np.array_equal(np.sort(a[0].numpy(), axis=None), np.sort(b[0].numpy(), axis=None))


class _WorkerContext(_Context):
    """Pipeline ``input_pipeline_id`` of two (two workers with one replica each)."""

    num_input_pipelines = 2

    def __init__(self, input_pipeline_id):
        self.input_pipeline_id = input_pipeline_id

    def get_per_replica_batch_size(self, global_batch):
        return global_batch // 2


def test_two_workers_split_each_global_batch_of_the_one_device_order(cifar_images):
    images, labels = cifar_images
    source = _array_source(images, np.arange(len(labels)))  # labels that name the image
    augment = data.train_transform("cifar", "cifar10", 32, encoded=False)
    batches = lambda context, start=0: list(data.train_dataset_fn(  # noqa: E731
        source, augment, 16, steps=4, epoch=2, start_step=start, seed=1)(context))
    single = batches(_Context())
    for start in (0, 2):  # also when resumed mid-epoch
        workers = [batches(_WorkerContext(i), start) for i in range(2)]
        assert len(workers[0]) == len(workers[1]) == 4 - start
        for step, (a, b) in enumerate(zip(*workers), start):
            # Each worker has half of the global batch, the halves are disjoint and together they are the
            # one-device batch, each image augmented exactly as on one device.
            assert a[0].shape[0] == b[0].shape[0] == 8 and not set(a[1].numpy()) & set(b[1].numpy())
            got = sorted(zip(np.concatenate([a[1], b[1]]), np.concatenate([a[0], b[0]]).reshape(16, -1).tolist()))
            want = sorted(zip(single[step][1].numpy(), single[step][0].numpy().reshape(16, -1).tolist()))
            assert got == want


def test_test_batches_are_padded_with_weight_zero(cifar_images):
    images, labels = cifar_images
    source = _array_source(images[:50], labels[:50])
    identity = lambda image, label: (tf.cast(image, tf.float32), label)  # noqa: E731
    batches = list(data.eval_dataset_fn(source, identity, 16)(_Context()))
    assert len(batches) == data.padded_size(50, 16) // 16 == 4
    assert all(b[0].shape[0] == 16 for b in batches)
    weights = np.concatenate([b[2].numpy() for b in batches])
    assert weights.sum() == 50 and np.all(weights[:50] == 1)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches])[:50], labels[:50])


def test_image_folder_source_sorts_classes_and_decodes(tmp_path, cifar_images):
    images, labels = cifar_images
    two = (labels == 0) | (labels == 1)
    _write_image_folder(tmp_path, images[two], labels[two])
    source = data.load_source(str(tmp_path), "cifar10", "train")
    assert data.detect_source(str(tmp_path)) == "image_folder"
    assert source.num_classes == 2 and source.encoded and source.num_examples == int(two.sum())
    transform = data.eval_transform("cifar", "cifar10", 32, 32, encoded=True)
    decoded = [transform(image, label) for image, label in source.dataset.take(3)]
    assert all(x.shape == (32, 32, 3) for x, _ in decoded)
    assert sorted(int(label) for _, label in source.dataset) == sorted(labels[two].tolist())


def test_image_folder_errors_say_what_layout_is_expected(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_source(str(tmp_path / "missing"), "cifar10", "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(data.DataError, match="no class sub-folders"):
        data.load_source(str(tmp_path), "cifar10", "train", source="image_folder")
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(data.DataError, match="No images"):
        data.load_source(str(tmp_path), "cifar10", "train", source="image_folder")
    with pytest.raises(data.DataError, match="test/val/validation"):
        data.load_source(str(tmp_path), "cifar10", "test", source="image_folder")


def test_missing_cifar_batches_are_a_data_error(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(data.DataError, match="not found"):
        data.load_source(str(tmp_path), "cifar10", "train")


def test_corrupt_pickle_is_a_data_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(data.DataError, match="not a readable CIFAR"):
        data.load_source(str(tmp_path), "cifar10", "train")


def test_unprepared_tfds_dataset_is_a_clear_error_not_a_download(tmp_path):
    with pytest.raises(data.DataError, match="not prepared.*--download"):
        data.load_source(str(tmp_path), "cifar10", "train", source="tfds")


def test_tfds_source_reads_a_local_tfds_build_of_real_images(tmp_path, cifar_images):
    import tensorflow_datasets as tfds

    images, labels = cifar_images
    binary = tmp_path / "download" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)

    def write(name, ims, labs):
        rows = np.concatenate([labs.astype(np.uint8)[:, None], ims.transpose(0, 3, 1, 2).reshape(len(ims), -1)], 1)
        rows.tofile(binary / name)

    for i in range(5):
        write(f"data_batch_{i + 1}.bin", images[i * 8:(i + 1) * 8], labels[i * 8:(i + 1) * 8])
    write("test_batch.bin", images[40:50], labels[40:50])
    (binary / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)))
    # The cifar10 builder's own code writes the TFDS files; only its download is replaced by the folder.
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract", return_value=str(binary.parent)):
        tfds.builder("cifar10", data_dir=str(tmp_path / "tfds")).download_and_prepare()

    source = data.load_source(str(tmp_path / "tfds"), "cifar10", "test")
    assert data.detect_source(str(tmp_path / "tfds")) == "tfds"
    assert source.num_examples == 10 and source.num_classes == 10 and source.encoded
    transform = data.eval_transform("cifar", "cifar10", 32, 32, encoded=True)
    got = sorted((int(label), transform(image, label)[0].numpy().tobytes()) for image, label in source.dataset)
    raw = data.eval_transform("cifar", "cifar10", 32, 32, encoded=False)
    want = sorted((int(label), raw(tf.constant(image), label)[0].numpy().tobytes())
                  for image, label in zip(images[40:50], labels[40:50]))
    assert got == want


def test_hold_out_keeps_the_first_images_for_training_and_the_last_for_validation(cifar_dir):
    source = data.load_source(str(cifar_dir), "cifar10", "train", limit=50)
    train, validation = data.hold_out(source, 0.1)
    assert (train.num_examples, validation.num_examples) == (45, 5)
    labels = [int(label) for _, label in source.dataset]
    assert [int(label) for _, label in train.dataset] == labels[:45]
    assert [int(label) for _, label in validation.dataset] == labels[45:]
    images = np.stack([image.numpy() for image, _ in source.dataset])
    assert np.array_equal(np.stack([image.numpy() for image, _ in validation.dataset]), images[45:])
    assert data.first(validation, 2).num_examples == 2


def test_hold_out_of_too_few_images_is_a_clear_error(cifar_dir):
    source = data.load_source(str(cifar_dir), "cifar10", "train", limit=4)
    with pytest.raises(ValueError, match="Holding out 10% of 4 training images leaves no validation"):
        data.hold_out(source, 0.1)


def test_training_and_test_pipelines_run_without_the_autotuning_thread(cifar_images):
    # With tf.data's autotuning on, deleting an epoch's iterator waits out the sleep of its model thread
    # (up to a minute, every core idle): the trainer makes an iterator per epoch, so both pipelines turn it off.
    images, labels = cifar_images
    source = _array_source(images[:16], labels[:16])
    augment = data.train_transform("cifar", "cifar10", 32, encoded=False)
    identity = lambda image, label: (tf.cast(image, tf.float32), label)  # noqa: E731
    for dataset in (data.train_dataset_fn(source, augment, 8, steps=2, epoch=0)(_Context()),
                    data.eval_dataset_fn(source, identity, 8)(_Context())):
        assert dataset.options().autotune.enabled is False
        assert len(list(dataset)) == 2


def test_cifar_train_crop_offsets_and_flips_are_uniform():
    # fb.resnet.torch draws the crop's top and left uniformly from 0..8 and flips half the images; the
    # trainer's draws, traced through an image whose pixels are their own coordinates, must do the same.
    image = np.zeros((32, 32, 3), np.float32)
    image[..., 0] = np.arange(32)[:, None] * 32 + np.arange(32)[None, :] + 1
    draws = 900
    tops, lefts, flips = [], [], []
    for position in range(draws):
        x = data._cifar_train(tf.constant(image), 32, tf.zeros(3), tf.ones(3),
                              data.augmentation_key(1, position % 3, position)).numpy()[..., 0]
        row, column = (int(v[0]) for v in np.nonzero(x == 16 * 32 + 16 + 1))  # where pixel (16, 16) went
        flipped = x[row, column + 1] == 16 * 32 + 15 + 1
        tops.append(16 + 4 - row)
        lefts.append(4 + (15 if flipped else 16) - column)
        flips.append(flipped)
    for offsets in (tops, lefts):
        counts = np.bincount(offsets, minlength=9)
        assert len(counts) == 9 and counts.min() > 60 and counts.max() < 140, counts  # 100 each expected
    assert 0.43 < np.mean(flips) < 0.57
