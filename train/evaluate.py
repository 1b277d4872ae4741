"""Evaluates weights on any dataset the pipelines read: top-1 / top-5 error, single crop or ten crops.

  python -m train.evaluate --config=imagenet_preact_resnet200 --weights=imagenet --data_dir=DATA
  python -m train.evaluate ... --image_size=320 --resize=320     # the paper's 320x320 test
  python -m train.evaluate ... --crop=ten_crop                   # 10-crop (corners, centre, mirrors)
  python -m train.evaluate --config=cifar10_preact_resnet164 --weights=RUN/best.weights.h5 --data_dir=DATA
"""

import json
import sys

from absl import app, flags

from train import configs, data, distribute, network, reporting, trainer


def evaluate_weights(config, weights, data_dir, *, crop="center", image_size=None, resize=None, split="test",
                     batch_size=100, source="auto", depth=None, num_classes=None, limit=None,
                     strategy=None):
    """Top-1/top-5 error (%) and mean loss of ``weights`` (anything ``weights=`` accepts) on ``split``."""
    strategy = strategy or distribute.make_strategy("auto")
    image_size = image_size or config.image_size
    if resize is None:
        resize = max(image_size, round(image_size * config.eval_resize / config.image_size))
    test = data.load_source(data_dir, config.dataset, split, source=source, limit=limit)
    classes = num_classes or configs.DATASET_CLASSES.get(config.dataset, test.num_classes)
    if test.num_classes > classes:
        raise ValueError(f"The data has {test.num_classes} classes but the model has {classes}; set --num_classes.")
    transform = data.eval_transform(config.augmentation, config.dataset, image_size, resize, crop, test.encoded)
    batch = distribute.global_batch_size(strategy, batch_size)
    with strategy.scope():
        model = network.build_network(config, classes, depth=depth, image_size=image_size, init_weights=weights)
    step = trainer.make_eval_step(model, strategy)
    iterator = iter(strategy.distribute_datasets_from_function(data.eval_dataset_fn(test, transform, batch)))
    result = trainer.evaluate(step, iterator, data.padded_size(test.num_examples, batch) // batch)
    result.update(crop=crop, image_size=image_size, resize=resize, split=split, weights=str(weights))
    return result


FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when it runs (absl keeps one set of flags per process)."""
    flags.DEFINE_string("config", None, "Named config the weights belong to (see python -m train --list_configs).")
    flags.DEFINE_string("weights", None, "'imagenet' or a weights file (e.g. RUN/best.weights.h5).")
    flags.DEFINE_string("data_dir", None, "Folder of the data (as for python -m train).")
    flags.DEFINE_enum("data_source", "auto", data.SOURCES, "Kind of --data_dir; 'auto' detects it.")
    flags.DEFINE_enum("split", "test", ["train", "test"], "Split to evaluate ('test' is ImageNet's validation set).")
    flags.DEFINE_enum("crop", "center", data.EVAL_CROPS, "Single centre crop or the ten crops.")
    flags.DEFINE_integer("image_size", None, "Crop size (default: the config's, 224 on ImageNet).", lower_bound=1)
    flags.DEFINE_integer("resize", None, "Shorter side before cropping (default 256 for a 224 crop).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 100, "Global batch size.", lower_bound=1)
    flags.DEFINE_integer("depth", None, "Depth the weights were trained with, if not the config's.", lower_bound=1)
    flags.DEFINE_integer("num_classes", None, "Classes of the weights' head, if not the dataset's.", lower_bound=1)
    flags.DEFINE_integer("examples", None, "Evaluate only the first N images.", lower_bound=1)
    flags.DEFINE_string("output", None, "Also write the result as JSON to this file.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for name in ("config", "weights", "data_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    try:
        config = configs.get_config(FLAGS.config)
        result = evaluate_weights(
            config, FLAGS.weights, FLAGS.data_dir, crop=FLAGS.crop, image_size=FLAGS.image_size,
            resize=FLAGS.resize, split=FLAGS.split, batch_size=FLAGS.batch_size, source=FLAGS.data_source,
            depth=FLAGS.depth, num_classes=FLAGS.num_classes, limit=FLAGS.examples,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"{config.name} on {result['images']} {FLAGS.split} images, {result['crop']} "
          f"{result['image_size']} (resize {result['resize']}): top-1 error {result['top1_error']:.2f}%, "
          f"top-5 error {result['top5_error']:.2f}%")
    if FLAGS.output:
        reporting.atomic_write(FLAGS.output, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
