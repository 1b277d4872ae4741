"""Evaluates weights on any dataset the pipelines read: top-1 / top-5 error, single crop or ten crops, and
per-class precision / recall with the confusion matrix.

  python -m keras_preresnet.train.evaluate --config=imagenet_preact_resnet200 --weights=imagenet --data_dir=DATA
  python -m keras_preresnet.train.evaluate ... --image_size=320 --resize=320     # the paper's 320x320 test
  python -m keras_preresnet.train.evaluate ... --crop=ten_crop                   # 10-crop (corners, centre, mirrors)
  python -m keras_preresnet.train.evaluate --config=cifar10_preact_resnet164 --weights=RUN/best.weights.h5 --data_dir=DATA
  python -m keras_preresnet.train.evaluate ... --confusion_png=confusion.png     # the confusion matrix as a picture
"""

import json

import numpy as np
import tensorflow as tf
from absl import flags

from keras_preresnet import cli, files
from keras_preresnet.datasets import DATASETS
from keras_preresnet.train import confusion, configs, data, distribute, network, plotting


def evaluate_weights(config, weights, data_dir, *, crop="center", image_size=None, resize=None, split="test",
                     batch_size=100, source="auto", depth=None, num_classes=None, limit=None,
                     strategy=None):
    """Top-1/top-5 error (%), mean loss and per-class results of ``weights`` (anything ``weights=`` accepts)
    on ``split``: ``per_class`` (precision, recall, images per class) and ``confusion`` (true x predicted)."""
    strategy = strategy or distribute.make_strategy("auto")
    image_size = image_size or config.image_size
    if resize is None:
        resize = DATASETS[config.dataset].eval_resize_for(image_size)
    test = data.load_source(data_dir, config.dataset, split, source=source, limit=limit)
    classes = num_classes or DATASETS[config.dataset].classes
    if test.num_classes > classes:
        raise ValueError(f"The data has {test.num_classes} classes but the model has {classes}; set --num_classes.")
    transform = data.eval_transform(config.augmentation, config.dataset, image_size, resize, crop, test.encoded)
    batch = distribute.global_batch_size(strategy, batch_size)
    with strategy.scope():
        model = network.build_network(config, classes, depth=depth, image_size=image_size, init_weights=weights)
    step = make_eval_step(model, strategy, confusion=True)
    iterator = distribute.iterate(strategy, data.eval_dataset_fn(test, transform, batch))
    result = evaluate(step, iterator, data.padded_size(test.num_examples, batch) // batch)
    result.update(crop=crop, image_size=image_size, resize=resize, split=split, weights=str(weights),
                  class_names=confusion.class_names(config.dataset, classes))
    result["per_class"] = confusion.per_class(result["confusion"], result["class_names"])
    return result


def make_eval_step(model, strategy, confusion=False):
    """A distributed step returning the weighted sums (loss, top-1 correct, top-5 correct, images), and
    with ``confusion`` the weighted confusion matrix (rows: true class, columns: top-1 prediction).

    Ten-crop batches ``[B, 10, H, W, 3]`` are scored by the mean softmax over the crops."""

    def replica_eval(images, labels, weights):
        crops = images.shape.rank == 5
        if crops:
            shape = tf.shape(images)
            images = tf.reshape(images, tf.concat([[-1], shape[2:]], 0))
        logits = tf.cast(model(images, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits)
        if crops:
            probabilities = tf.reduce_mean(tf.reshape(probabilities, [shape[0], 10, -1]), axis=1)
        classes = probabilities.shape[-1]
        labels = tf.cast(labels, tf.int32)
        loss = -tf.math.log(tf.maximum(tf.gather(probabilities, labels, batch_dims=1), 1e-12))
        top1 = tf.cast(tf.math.in_top_k(labels, probabilities, 1), tf.float32)
        top5 = tf.cast(tf.math.in_top_k(labels, probabilities, min(5, classes)), tf.float32)
        sums = tuple(tf.reduce_sum(v * weights) for v in (loss, top1, top5)) + (tf.reduce_sum(weights),)
        if confusion:
            sums += (tf.math.confusion_matrix(labels, tf.argmax(probabilities, -1, output_type=tf.int32),
                                              num_classes=classes, weights=weights, dtype=tf.float32),)
        return sums

    @tf.function
    def eval_step(iterator):
        results = strategy.run(replica_eval, args=next(iterator))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in results]

    return eval_step


def evaluate(eval_step, iterator, steps):
    """Runs ``steps`` of ``eval_step``; returns mean loss, top-1/top-5 error (%), the image count and,
    from a step made with ``confusion``, the confusion matrix (int counts)."""
    totals = None
    for _ in range(steps):
        try:
            results = [np.asarray(v, np.float64) for v in eval_step(iterator)]
            totals = results if totals is None else [t + r for t, r in zip(totals, results)]
        except tf.errors.InvalidArgumentError as error:
            raise data.DataError(
                f"Could not read a test image (corrupt or not an image?): {error.message.splitlines()[0]}"
            ) from error
    loss, top1, top5, count = (float(v) for v in totals[:4])
    result = {
        "loss": loss / count,
        "top1_error": 100 * (1 - top1 / count),
        "top5_error": 100 * (1 - top5 / count),
        "images": int(count),
    }
    if len(totals) > 4:
        result["confusion"] = np.rint(totals[4]).astype(np.int64)
    return result


FLAGS = flags.FLAGS


def _define_flags():
    """The command line's flags, defined only when it runs (``python -m keras_preresnet.train`` has flags of the same names)."""
    flags.DEFINE_string("config", None, "Named config the weights belong to (see python -m keras_preresnet.train --list_configs).")
    flags.DEFINE_string("weights", None, "'imagenet' or a weights file (e.g. RUN/best.weights.h5).")
    flags.DEFINE_string("data_dir", None, "Folder of the data (as for python -m keras_preresnet.train).")
    flags.DEFINE_enum("data_source", "auto", data.SOURCES, "Kind of --data_dir; 'auto' detects it.")
    flags.DEFINE_enum("split", "test", ["train", "test"], "Split to evaluate ('test' is ImageNet's validation set).")
    flags.DEFINE_enum("crop", "center", data.EVAL_CROPS, "Single centre crop or the ten crops.")
    flags.DEFINE_integer("image_size", None, "Crop size (default: the config's, 224 on ImageNet).", lower_bound=1)
    flags.DEFINE_integer("resize", None, "Shorter side before cropping (default 256 for a 224 crop).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 100, "Global batch size.", lower_bound=1)
    flags.DEFINE_integer("depth", None, "Depth the weights were trained with, if not the config's.", lower_bound=1)
    flags.DEFINE_integer("num_classes", None, "Classes of the weights' head, if not the dataset's.", lower_bound=1)
    flags.DEFINE_integer("examples", None, "Evaluate only the first N images.", lower_bound=1)
    flags.DEFINE_string("output", None, "Also write the result (per-class results included) as JSON to this file.")
    flags.DEFINE_string("confusion_png", None, "Also draw the confusion matrix to this PNG file.")


def main(argv):
    cli.check_arguments(argv, FLAGS, ("config", "weights", "data_dir"))
    config = configs.get_config(FLAGS.config)
    result = evaluate_weights(
        config, FLAGS.weights, FLAGS.data_dir, crop=FLAGS.crop, image_size=FLAGS.image_size,
        resize=FLAGS.resize, split=FLAGS.split, batch_size=FLAGS.batch_size, source=FLAGS.data_source,
        depth=FLAGS.depth, num_classes=FLAGS.num_classes, limit=FLAGS.examples,
    )
    print(f"{config.name} on {result['images']} {FLAGS.split} images, {result['crop']} "
          f"{result['image_size']} (resize {result['resize']}): top-1 error {result['top1_error']:.2f}%, "
          f"top-5 error {result['top5_error']:.2f}%")
    if len(result["per_class"]) <= confusion.PRINTED_CLASSES:
        print(confusion.table(result["per_class"]))
    if FLAGS.confusion_png:
        plotting.plot_confusion(result["confusion"], result["class_names"], FLAGS.confusion_png,
                                title=f"{config.name}, {result['images']} {FLAGS.split} images")
    if FLAGS.output:
        saved = dict(result, confusion=result["confusion"].tolist())
        files.write_bytes(FLAGS.output, json.dumps(saved, indent=2) + "\n")
    return 0


def run():
    _define_flags()
    cli.run("evaluate", main)


if __name__ == "__main__":
    run()
