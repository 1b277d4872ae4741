"""Input pipelines: sources of (image, label) pairs and the paper's augmentation, in tf.data.

Sources: TFDS ``cifar10`` / ``cifar100`` / ``imagenet2012`` (manual download directory), folders of
CIFAR python-pickle batches, and image folders (``<split>/<class>/<image>``). Every source yields
``(image, label)`` where the image is a uint8 ``[H, W, 3]`` array or encoded bytes (JPEG/PNG/...).

Augmentation (docs/training.md), on the fly in the input pipeline:

* ``cifar``: per-channel normalisation, horizontal flip, 4-pixel zero padding and a random 32x32 crop
  (fb.resnet.torch's CIFAR order: the padding is zero *after* normalisation, i.e. the mean colour).
  Test: the normalised original image.
* ``imagenet``: fb.resnet.torch's training transform: random-sized crop (8%-100% of the area, aspect
  3/4-4/3) resized to 224 bicubic, colour jitter 0.4 in random order, PCA lighting noise 0.1,
  normalisation, horizontal flip.
* ``imagenet_scale``: the paper's scale augmentation: shorter side resized to a random size in
  [256, 480], random 224 crop, flip, normalisation.
* ImageNet test: ``keras_preresnet.preprocessing.preprocess_input`` (shorter side to ``resize``
  bicubic, centre crop) or the ten crops (four corners, centre, and their mirror images).

Every random draw of the augmentation is a stateless op keyed by (seed, epoch, position of the image in
the epoch's order), so an image is augmented the same way whatever thread maps it and whether the
epoch ran in one go or was resumed mid-way.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_preresnet import defaults
from keras_preresnet.datasets import DATASETS
from keras_preresnet.datasets import load_cifar
from keras_preresnet.preprocessing import centre_crop_offsets, preprocess_input

AUTOTUNE = tf.data.AUTOTUNE
SOURCES = ("auto", "tfds", "cifar_pickle", "image_folder")
AUGMENTATIONS = ("cifar", "imagenet", "imagenet_scale")
EVAL_CROPS = ("center", "ten_crop")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Folder names an image folder may use for each split.
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val", "validation")}

# fb.resnet.torch's ImageNet PCA lighting noise (eigen-decomposition of the RGB covariance, [0, 1] scale).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
LIGHTING_STD = 0.1
COLOR_JITTER = 0.4
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
SCALE_RANGE = (256, 480)
CIFAR_PADDING = 4
CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}
# Images held decoded in memory (CIFAR) are shuffled completely; encoded files (ImageNet, image folders)
# through a buffer of this many (TFDS writes its shards already shuffled).
ENCODED_SHUFFLE_BUFFER = 10_000


def pipeline_options():
    """The options of every training and evaluation pipeline: tf.data's autotuning off.

    The trainer makes a new iterator each epoch. With autotuning on, each iterator runs a model thread that
    sleeps between optimisations for a period that doubles up to a minute, and the iterator's destructor
    waits for that sleep to end: epochs stalled for 0-60 s with every core idle (measured: 300 images/s
    epochs at 121 and 60). The parallel maps run ``parallel_calls()`` calls at once instead, and
    prefetching keeps its own buffer tuning; the pipeline costs ~2% of a CIFAR step either way.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def parallel_calls():
    """Parallel map calls of the pipelines: one per core this process may use (autotuning, being off,
    would otherwise cap them at 16, too few to decode ImageNet JPEGs for several GPUs)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class DataError(ValueError):
    """Data that cannot be read: a missing folder, an unprepared dataset, a corrupt file."""


@dataclasses.dataclass
class Source:
    """A finite dataset of ``(image, label)``; ``encoded`` says whether images are still encoded bytes."""

    dataset: tf.data.Dataset
    num_examples: int
    num_classes: int
    encoded: bool
    description: str
    class_names: tuple = None  # in label order, where the data names its classes


def _normalisation(dataset):
    """Mean and std (0-255 scale) the images of ``dataset`` are normalised with; other datasets
    (image folders) take ImageNet's."""
    info = DATASETS.get(dataset, DATASETS["imagenet2012"])
    return info.mean, info.std


# ----------------------------------------------------------------------------------------- sources


def _cifar_pickle_source(data_dir, dataset, split):
    images, labels = load_cifar(data_dir, dataset, split)
    return Source(
        tf.data.Dataset.from_tensor_slices((images, labels)), len(labels),
        CIFAR_CLASSES[dataset], encoded=False,
        description=f"{dataset} {split} from the python-pickle batches in {data_dir}",
        class_names=DATASETS[dataset].labels,
    )


def _split_folder(data_dir, split):
    for name in SPLIT_FOLDERS[split]:
        path = os.path.join(data_dir, name)
        if os.path.isdir(path):
            return path
    return None


def _image_folder_source(data_dir, split):
    folder = _split_folder(data_dir, split)
    if folder is None:
        raise DataError(
            f"Image folder {data_dir!r} has no {'/'.join(SPLIT_FOLDERS[split])} sub-folder for the {split} "
            "split; lay the images out as <data_dir>/train/<class>/<image> and <data_dir>/test/<class>/<image>."
        )
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not classes:
        raise DataError(f"{folder!r} holds no class sub-folders; put each class's images in its own folder.")
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(folder, name)
        for filename in sorted(os.listdir(class_dir)):
            if filename.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(class_dir, filename))
                labels.append(label)
    if not paths:
        raise DataError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}.")
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int64)))
    dataset = dataset.map(lambda path, label: (tf.io.read_file(path), label))
    return Source(dataset, len(paths), len(classes), encoded=True,
                  description=f"{len(paths)} images of {len(classes)} classes in {folder}",
                  class_names=tuple(classes))


def _tfds_source(data_dir, dataset, split, manual_dir=None, download=False):
    import tensorflow_datasets as tfds

    builder = tfds.builder(dataset, data_dir=data_dir)
    if not builder.is_prepared():
        if not download and not manual_dir:
            raise DataError(
                f"TFDS dataset {dataset!r} is not prepared in {data_dir!r}. Prepare it there first "
                "(e.g. `tfds build`), pass --download to let TFDS fetch it, or for imagenet2012 pass "
                "--manual_dir=<folder with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar>."
            )
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        builder.download_and_prepare(download_config=config)
    splits = builder.info.splits
    if split not in splits and split == "test" and "validation" in splits:
        split = "validation"
    if split not in splits:
        raise DataError(f"TFDS dataset {dataset!r} has no split {split!r}; it has {sorted(splits)}.")
    images = builder.as_dataset(
        split=split, shuffle_files=False, as_supervised=True,
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    label = builder.info.features["label"]
    return Source(images, splits[split].num_examples, label.num_classes, encoded=True,
                  description=f"TFDS {dataset} {split} in {data_dir}", class_names=tuple(label.names))


def detect_source(data_dir):
    """The kind of ``data_dir``: 'cifar_pickle', 'image_folder' or 'tfds'."""
    if any(os.path.isdir(os.path.join(data_dir, d)) for d in ("cifar-10-batches-py", "cifar-100-python")):
        return "cifar_pickle"
    if os.path.basename(os.path.normpath(data_dir)) in ("cifar-10-batches-py", "cifar-100-python"):
        return "cifar_pickle"
    if _split_folder(data_dir, "train") is not None:
        return "image_folder"
    return "tfds"


def load_source(data_dir, dataset, split, source="auto", manual_dir=None, download=False, limit=None):
    """Opens ``split`` ('train' or 'test') of ``dataset`` in ``data_dir``; ``limit`` keeps the first images."""
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}; received {source!r}.")
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"`split` must be 'train' or 'test'; received {split!r}.")
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f"The data directory {data_dir!r} does not exist; pass --data_dir=<folder with the data>.")
    if source == "auto":
        source = detect_source(data_dir)
    try:
        if source == "cifar_pickle":
            result = _cifar_pickle_source(data_dir, dataset, split)
        elif source == "image_folder":
            result = _image_folder_source(data_dir, split)
        else:
            result = _tfds_source(data_dir, dataset, split, manual_dir, download)
    except (FileNotFoundError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(str(error)) from error
    return result if limit is None else first(result, limit)


def first(source, count):
    """The first ``count`` images of ``source``."""
    if count < 1:
        raise ValueError(f"The example limit must be positive; received {count}.")
    return dataclasses.replace(source, dataset=source.dataset.take(count), num_examples=min(count, source.num_examples))


def hold_out(source, fraction):
    """Splits the training ``source`` into ``(train, validation)``: the last ``fraction`` of its images
    are held out for validation (the ResNet paper's 45k/5k split of CIFAR-10 is ``fraction=0.1``)."""
    held = round(source.num_examples * fraction)
    if not 0 < held < source.num_examples:
        raise ValueError(
            f"Holding out {fraction:.0%} of {source.num_examples} training images leaves no validation or no "
            "training images; use more --train_examples."
        )
    kept = source.num_examples - held
    train = dataclasses.replace(source, dataset=source.dataset.take(kept), num_examples=kept,
                                description=f"the first {kept} images of {source.description}")
    validation = dataclasses.replace(source, dataset=source.dataset.skip(kept), num_examples=held,
                                     description=f"the last {held} images of {source.description} (validation)")
    return train, validation


# ------------------------------------------------------------------------------------ augmentation


def _decode(image, encoded):
    if encoded:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def _cifar_train(image, size, mean, std, key):
    flip_key, crop_key = _split(key, 2)
    x = tf.image.resize(tf.cast(image, tf.float32), [size, size]) if image.shape[0] != size else image
    x = (tf.cast(x, tf.float32) - mean) / std
    x = tf.image.stateless_random_flip_left_right(x, flip_key)
    x = tf.pad(x, [[CIFAR_PADDING, CIFAR_PADDING], [CIFAR_PADDING, CIFAR_PADDING], [0, 0]])
    return tf.image.stateless_random_crop(x, [size, size, 3], crop_key)


def _cifar_eval(image, size, mean, std):
    x = tf.cast(image, tf.float32)
    x = tf.image.resize(x, [size, size]) if image.shape[0] != size else x
    return tf.ensure_shape((x - mean) / std, [size, size, 3])


def _grayscale(x):
    return tf.tensordot(x, tf.constant([0.299, 0.587, 0.114]), axes=1)[..., tf.newaxis]


def _blend(x, other, alpha):
    return x * alpha + other * (1 - alpha)


def augmentation_key(seed, epoch, position):
    """The stateless-random key of the image at ``position`` in ``epoch``'s order of a run seeded ``seed``."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(position, tf.int64))


def _split(key, count):
    """``count`` independent keys from ``key`` (one per random draw)."""
    return tf.unstack(tf.random.experimental.stateless_split(key, count))


def color_jitter(x, key, strength=COLOR_JITTER):
    """fb.resnet.torch ColorJitter: brightness, contrast, saturation with factor 1 ± strength, in random order."""
    order_key, factor_key = _split(key, 2)
    order = tf.argsort(tf.random.stateless_uniform([3], order_key))
    factors = 1 + tf.random.stateless_uniform([3], factor_key, -strength, strength)

    def brightness(x):
        return _blend(x, tf.zeros_like(x), factors[0])

    def contrast(x):
        return _blend(x, tf.reduce_mean(_grayscale(x)), factors[1])

    def saturation(x):
        return _blend(x, _grayscale(x), factors[2])

    for index in tf.unstack(order):
        x = tf.switch_case(index, [lambda: brightness(x), lambda: contrast(x), lambda: saturation(x)])
    return x


def lighting(x, key, std=LIGHTING_STD):
    """AlexNet-style PCA lighting noise as fb.resnet.torch's Lighting (images on the [0, 1] scale)."""
    alpha = tf.random.stateless_normal([3], key, stddev=std)
    rgb = tf.linalg.matvec(tf.constant(PCA_EIGVEC), alpha * tf.constant(PCA_EIGVAL))
    return x + rgb


def random_sized_crop(image, size, key):
    """A crop of 8%-100% of the area and aspect ratio 3/4-4/3, resized to ``size`` (bicubic)."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4]), seed=key, min_object_covered=0.0,
        aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA, max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bicubic")


def _normalise_unit_scale(x):
    return (x - tf.constant(defaults.IMAGENET_MEAN)) / tf.constant(defaults.IMAGENET_STD)


def _imagenet_train(image, size, key):
    crop_key, jitter_key, lighting_key, flip_key = _split(key, 4)
    x = random_sized_crop(image, size, crop_key) / 255.0
    x = lighting(color_jitter(x, jitter_key), lighting_key)
    x = _normalise_unit_scale(x)
    return tf.image.stateless_random_flip_left_right(x, flip_key)


def _imagenet_scale_train(image, size, key):
    scale_key, crop_key, flip_key = _split(key, 3)
    shorter = tf.random.stateless_uniform([], scale_key, SCALE_RANGE[0], SCALE_RANGE[1] + 1, dtype=tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.math.ceil(shape * tf.cast(shorter, tf.float32) / tf.reduce_min(shape)), tf.int32)
    x = tf.image.resize(tf.cast(image, tf.float32), tf.maximum(new, size), method="bicubic")
    x = tf.image.stateless_random_crop(x, [size, size, 3], crop_key) / 255.0
    return tf.image.stateless_random_flip_left_right(_normalise_unit_scale(x), flip_key)


def ten_crop(image, size, resize):
    """The ten ``size`` crops (corners, centre and mirrors) of the image resized to shorter side ``resize``."""
    x = preprocess_input(image, image_size=None, resize_size=resize)
    height, width = tf.shape(x)[0], tf.shape(x)[1]
    offsets = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
               centre_crop_offsets(height, width, size)]
    crops = [x[top: top + size, left: left + size] for top, left in offsets]
    crops += [tf.image.flip_left_right(c) for c in crops]
    return tf.ensure_shape(tf.stack(crops), [10, size, size, 3])


def train_transform(augmentation, dataset, image_size, encoded, image_augment=None):
    """The training map ``(image, label, key) -> (float32 image, label)``; ``key`` (see
    ``augmentation_key``) decides every random choice of the recipe's augmentation. ``image_augment``
    (e.g. ``augment.rand_augment``) runs on the decoded 0-255 image before it."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"`augmentation` must be one of {AUGMENTATIONS}; received {augmentation!r}.")
    mean, std = (tf.constant(v, tf.float32) for v in _normalisation(dataset))

    def transform(image, label, key):
        image = _decode(image, encoded)
        if image_augment is not None:
            image = image_augment(image)
        if augmentation == "cifar":
            x = _cifar_train(image, image_size, mean, std, key)
        elif augmentation == "imagenet":
            x = _imagenet_train(image, image_size, key)
        else:
            x = _imagenet_scale_train(image, image_size, key)
        return tf.ensure_shape(x, [image_size, image_size, 3]), label

    return transform


def eval_transform(augmentation, dataset, image_size, resize, crop="center", encoded=False):
    """The test map: the CIFAR image as it is, or an ImageNet centre crop / ten crops."""
    if crop not in EVAL_CROPS:
        raise ValueError(f"`crop` must be one of {EVAL_CROPS}; received {crop!r}.")
    if augmentation == "cifar" and crop != "center":
        raise ValueError("Ten-crop testing is defined for ImageNet-style models; CIFAR models test on the single image.")
    if resize < image_size:
        raise ValueError(f"The test resize ({resize}) must be at least the crop size ({image_size}).")
    mean, std = (tf.constant(v, tf.float32) for v in _normalisation(dataset))

    def transform(image, label):
        image = _decode(image, encoded)
        if augmentation == "cifar":
            x = _cifar_eval(image, image_size, mean, std)
        elif crop == "ten_crop":
            x = ten_crop(image, image_size, resize)
        else:
            x = tf.ensure_shape(preprocess_input(image, image_size=image_size, resize_size=resize),
                                [image_size, image_size, 3])
        return x, label

    return transform


# ------------------------------------------------------------------------------------- pipelines


def train_dataset_fn(source, transform, global_batch, steps, epoch, start_step=0, seed=0, batch_transform=None):
    """A ``distribute_datasets_from_function`` function for one epoch of ``steps`` steps, from ``start_step``.

    ``batch_transform`` (e.g. ``augment.batch_mix``) maps each replica's batch ``(images, labels)``.

    The order of an epoch and the recipe's augmentation of each image in it depend only on ``seed`` and
    ``epoch``, so a run resumed mid-epoch skips exactly the batches it had trained on and then sees the
    same batches as an uninterrupted run. Each input pipeline takes its shard of the shuffled order.
    """

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        per_pipeline = global_batch // context.num_input_pipelines
        replicas_per_pipeline = per_pipeline // per_replica
        buffer = min(ENCODED_SHUFFLE_BUFFER, source.num_examples) if source.encoded else source.num_examples
        ds = source.dataset.shuffle(buffer, seed=seed * 1000 + epoch, reshuffle_each_iteration=False).enumerate()
        ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
        ds = ds.skip(start_step * per_pipeline)
        ds = ds.map(lambda position, example: transform(*example, augmentation_key(seed, epoch, position)),
                    num_parallel_calls=parallel_calls(), deterministic=True)
        ds = ds.batch(per_replica, drop_remainder=True)
        if batch_transform is not None:
            ds = ds.map(batch_transform, num_parallel_calls=parallel_calls(), deterministic=True)
        ds = ds.take((steps - start_step) * replicas_per_pipeline)
        return ds.prefetch(AUTOTUNE).with_options(pipeline_options())

    return dataset_fn


def padded_size(num_examples, global_batch):
    return -(-num_examples // global_batch) * global_batch


def eval_dataset_fn(source, transform, global_batch):
    """Test batches with a weight per image; padded with weight-0 images to whole global batches so that
    every replica and worker runs the same number of steps."""
    padding = padded_size(source.num_examples, global_batch) - source.num_examples

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        real = source.dataset.map(lambda image, label: (image, label, tf.constant(1.0)))
        filler = source.dataset.repeat().take(padding).map(lambda image, label: (image, label, tf.constant(0.0)))
        ds = real.concatenate(filler).shard(context.num_input_pipelines, context.input_pipeline_id)
        ds = ds.map(lambda image, label, weight: (*transform(image, label), weight),
                    num_parallel_calls=parallel_calls(), deterministic=True)
        return ds.batch(per_replica, drop_remainder=True).prefetch(AUTOTUNE).with_options(pipeline_options())

    return dataset_fn
