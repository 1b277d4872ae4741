"""Trains a ResNet of the paper with one of its recipes.

  python -m keras_preresnet.train --config=cifar10_preact_resnet164 --data_dir=DATA --model_dir=RUN

Start the same command again to resume an interrupted run from its last checkpoint. `--list_configs`
prints the configs; docs/training.md explains the flags, the batch-size / learning-rate rule and
fine-tuning.
"""

import signal
import sys

import keras_preresnet  # noqa: F401 (first: loads TensorFlow without its start-up lines)
from absl import flags, logging

from keras_preresnet import cli, files
from keras_preresnet.train import configs, data, distribute, trainer
from keras_preresnet.train import options as training_options

FLAGS = flags.FLAGS
# --scan_units values and the build_resnet(scan_units=...) each one means.
SCAN_UNITS = {"auto": "auto", "on": True, "off": False}

flags.DEFINE_string("config", None, "Named experiment (see --list_configs).")
flags.DEFINE_bool("list_configs", False, "Print the named configs and exit.")
flags.DEFINE_string("data_dir", None, "Folder of the data: CIFAR pickle batches, an image folder or TFDS data.")
flags.DEFINE_string("model_dir", None, "Folder for checkpoints, logs, metrics and weights of this run.")
flags.DEFINE_enum("data_source", "auto", data.SOURCES, "Kind of --data_dir; 'auto' detects it.")
flags.DEFINE_string("manual_dir", None, "TFDS manual download folder (imagenet2012 tar files).")
flags.DEFINE_bool("download", False, "Let TFDS download the dataset if it is not prepared in --data_dir.")
flags.DEFINE_enum("recipe", None, list(configs.RECIPES), "Override the config's recipe (schedule, Nesterov).")
flags.DEFINE_integer("epochs", None, "Train this many epochs; the schedule's drops keep their fraction.", lower_bound=1)
flags.DEFINE_integer("steps", None, "Train this many steps; the schedule's drops keep their fraction.", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Global batch size (all replicas together).", lower_bound=1)
flags.DEFINE_integer("per_replica_batch_size", None, "Batch size per replica (instead of --batch_size).",
                     lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Base learning rate at the recipe's reference batch.")
flags.DEFINE_enum("lr_scaling", "linear", ["linear", "none"], "Scale the learning rate with the global batch.")
flags.DEFINE_bool("nesterov", None, "Override the recipe's Nesterov momentum.")
flags.DEFINE_float("weight_decay", None, "Override the recipe's weight decay (L2 on all weights).")
flags.DEFINE_enum("strategy", "auto", distribute.STRATEGIES,
                  "Distribution: mirrored (local GPUs; the default when there are any), one_device, "
                  "multi_worker (cluster from TF_CONFIG).")
flags.DEFINE_integer("num_cpu_devices", None, "Split the CPU into this many logical devices (tests).",
                     lower_bound=1)
flags.DEFINE_enum("precision", "float32", trainer.PRECISIONS, "Dtype policy.")
flags.DEFINE_bool("xla", False, "Compile the forward and backward pass with XLA.")
flags.DEFINE_enum("scan_units", "auto", list(SCAN_UNITS), "Run each stage's repeated units as one loop "
                  "(compile time independent of depth): 'auto' for stages of many units, 'on' or 'off'.")
flags.DEFINE_bool("remat", False, "Recompute looped units in the backward pass instead of storing them.")
flags.DEFINE_integer("checkpoint_steps", None, "Also checkpoint every N steps (always every epoch).",
                     lower_bound=1)
flags.DEFINE_string("init_weights", None, "Start from these weights: 'imagenet' or a weights file.")
flags.DEFINE_integer("num_classes", None, "Classes of the new head (default: the data's).", lower_bound=1)
flags.DEFINE_bool("freeze_backbone", False, "Train only the head; BatchNorm runs in inference mode.")
flags.DEFINE_integer("unfreeze_after", None, "Unfreeze the backbone after this many epochs.", lower_bound=0)
flags.DEFINE_integer("depth", None, "Override the depth (e.g. 8 for a smoke test).", lower_bound=1)
flags.DEFINE_integer("image_size", None, "Override the training crop size.", lower_bound=1)
flags.DEFINE_enum("augmentation", None, data.AUGMENTATIONS, "Override the config's augmentation.")
flags.DEFINE_integer("train_examples", None, "Use only the first N training images.", lower_bound=1)
flags.DEFINE_integer("eval_examples", None, "Use only the first N test images.", lower_bound=1)
flags.DEFINE_bool("validation", False, "Train on the paper's train part of the training set and test on its held-out "
                  "validation images (CIFAR: the last 5k of 50k) instead of the test set.")
flags.DEFINE_integer("seed", 0, "Seed of the initialisation, the data order and the augmentation.")
flags.DEFINE_bool("deterministic", False, "Deterministic ops too: runs with one seed are bit-identical "
                  "(docs/training.md).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool("extend", False, "Resume a run with another budget or schedule (--epochs, --steps, "
                  "--learning_rate, --lr_schedule ...): it goes on from its checkpoint on the new schedule.")
# Training options beside the paper's recipes (train/options.py); unset keeps the config's value (off).
flags.DEFINE_float("label_smoothing", None, "Label smoothing e: targets (1 - e) one-hot + e / classes.")
flags.DEFINE_enum("lr_schedule", None, training_options.LR_SCHEDULES,
                  "'step': the recipe's drops; 'cosine': cosine decay to 0 from the recipe's base rate.")
flags.DEFINE_float("warmup_epochs", None, "Linear warm-up from 0 before the cosine decay (epochs).")
flags.DEFINE_float("warmup_iterations", None, "The step recipes' warm-up at the recipe's warm-up rate (0.01 at "
                   "batch 128) for this many iterations at batch 128, kept when --epochs/--steps shortens the run "
                   "(the recipe's own warm-up keeps its fraction: 400 of 64k iterations); 0: none.")
flags.DEFINE_float("ema_decay", None, "Keep an exponential moving average of the weights with this decay "
                   "(e.g. 0.999); it is tested and saved as last/best weights.")
flags.DEFINE_float("mixup_alpha", None, "MixUp (keras.layers.MixUp) with Beta(alpha, alpha) weights.")
flags.DEFINE_float("cutmix_factor", None, "CutMix (keras.layers.CutMix) with this factor in (0, 1]; with "
                   "MixUp too, each batch gets one of the two.")
flags.DEFINE_integer("randaugment_ops", None, "RandAugment (keras.layers.RandAugment): ops per image.")
flags.DEFINE_float("randaugment_factor", None, "RandAugment strength in [0, 1].")
flags.DEFINE_float("drop_path_rate", None, "Stochastic depth: the last unit drops its residual branch with "
                   "this probability, unit l of L with rate * l / L.")


def configs_table():
    width = max(len(name) for name in configs.CONFIGS)
    lines = []
    for name, config in configs.CONFIGS.items():
        tables = configs.tables_of(name)
        lines.append(f"  {name:<{width}}  {config.description} [paper: {config.paper_error}]"
                     + (f" [python -m keras_preresnet.train.table --table={','.join(tables)}]" if tables else ""))
    return "Configs:\n" + "\n".join(lines) + "\n"


def settings_from_flags():
    names = [field.name for field in trainer.Settings.__dataclass_fields__.values()]
    values = {name: getattr(FLAGS, name) for name in names if name in FLAGS and name != "source"}
    values["scan_units"] = SCAN_UNITS[FLAGS.scan_units]
    options = {name: getattr(FLAGS, name) for name in training_options.FIELDS}
    return trainer.Settings(source=FLAGS.data_source, options=options, **values)


def main(argv):
    cli.check_arguments(argv, FLAGS, () if FLAGS.list_configs else ("config", "data_dir", "model_dir"))
    if FLAGS.list_configs:
        print(configs_table())
        return 0
    try:
        config = configs.get_config(FLAGS.config)
    except ValueError as error:
        raise cli.usage_error(str(error)) from error
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    files.name_output_option("--model_dir")
    # Ctrl-C interrupts the run (saving a checkpoint) even where the parent process ignored SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Devices and the multi-worker strategy must be set up before any other TensorFlow work.
    distribute.configure_cpu_devices(FLAGS.num_cpu_devices)
    strategy = distribute.make_strategy(FLAGS.strategy)
    summary = trainer.Trainer(config, settings_from_flags(), strategy).run()
    if summary.get("final_test_error") is not None:
        print(f"final test error {summary['final_test_error']:.2f}% (best {summary['best_test_error']:.2f}% "
              f"at epoch {summary['best_epoch']}), {summary['images_per_second']:.1f} images/s")
    return cli.EXIT_OK


def run():
    # absl prints the main module's docstring as the usage of --help: list the configs there.
    module = sys.modules[__name__]
    module.__doc__ += "\n" + configs_table()
    cli.run("train", main, failures=(trainer.TrainingError,),
            interrupted="start the same command again to resume from the last checkpoint.")


if __name__ == "__main__":
    run()
