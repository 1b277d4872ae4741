"""The training loop: one custom loop (``strategy.run``) for every strategy.

Keras 3.15's ``model.fit`` fails under MultiWorkerMirroredStrategy (docs/training.md), so the trainer runs its
own loop; OneDevice and Mirrored strategies use the same code.

Optimisation is Torch's SGD as fb.resnet.torch (and the paper's public code) run it
(``optimizer.TorchSGD``): momentum 0.9 with the learning rate outside the velocity and dampening 0
(Nesterov where the recipe says so), and weight decay as L2 on *every* trainable weight, BatchNorm
gamma/beta and biases included, coupled into the gradient (``g + wd * w``) before momentum. It is
added to the loss as ``wd/2 * ||w||^2``, which gives exactly that gradient and works with loss scaling.
The loss is the mean cross-entropy over the global batch; an epoch is the whole batches of one
shuffle (the last partial batch is left out). How this compares with fb.resnet.torch, detail by
detail: docs/training.md, "Fidelity to the reference code".

Fault tolerance: a ``tf.train.Checkpoint`` (weights, optimiser slots, step and the metrics rows of
the finished epochs) every epoch and every ``checkpoint_steps`` steps; the epoch's order depends only
on the seed and the epoch, so a run started again with the same command resumes mid-epoch where its
last checkpoint was taken. The checkpoint at the end of an epoch is what makes the epoch done: the
files shown in model_dir (last and best weights, metrics.csv, curves, TensorBoard points) are written
from it afterwards, and written again by a restart from it, so a kill at any moment loses no epoch's
record. A checkpoint is only ever written from finite weights; a non-finite loss stops the run and
keeps the last good one.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from keras_preresnet import files, runs
from keras_preresnet.datasets import DATASETS
from keras_preresnet.train import augment, configs, data, distribute, network, plotting, regularization, reporting, schedules
from keras_preresnet.train.optimizer import TorchSGD
from keras_preresnet.train import options as training_options
from keras_preresnet.train.evaluate import evaluate, make_eval_step

CHECKPOINT_DIR = "checkpoints"
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


# run.json's entries that --extend may change: the length of the run and its learning rates.
SCHEDULE_KEYS = ("total_steps", "schedule")


class TrainingError(RuntimeError):
    """A run that cannot go on: non-finite loss, or a model_dir holding a different run."""


@dataclasses.dataclass
class Settings:
    """Everything a run needs besides its config. ``None`` means the config's (or recipe's) value."""

    model_dir: str
    data_dir: str
    source: str = "auto"
    manual_dir: str = None
    download: bool = False
    recipe: str = None
    epochs: int = None
    steps: int = None
    batch_size: int = None
    per_replica_batch_size: int = None
    learning_rate: float = None
    lr_scaling: str = "linear"
    nesterov: bool = None
    weight_decay: float = None
    precision: str = "float32"
    xla: bool = False
    scan_units: object = "auto"  # 'auto', True or False: loop each stage's repeated units (build_resnet)
    remat: bool = False
    checkpoint_steps: int = None
    init_weights: str = None
    num_classes: int = None
    freeze_backbone: bool = False
    unfreeze_after: int = None
    depth: int = None
    image_size: int = None
    augmentation: str = None
    train_examples: int = None
    eval_examples: int = None
    validation: bool = False
    seed: int = 0
    deterministic: bool = False
    progress: bool = True
    extend: bool = False  # resume with another budget or schedule (run.json's SCHEDULE_KEYS)
    options: dict = None  # overrides of the config's train.options.Options; None values keep the config's


def _check_settings(settings):
    if settings.precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}; received {settings.precision!r}.")
    for name in ("epochs", "steps", "checkpoint_steps", "num_classes", "depth", "image_size",
                 "train_examples", "eval_examples"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be a positive integer; received {value}.")
    if settings.epochs is not None and settings.steps is not None:
        raise ValueError("Pass either --epochs or --steps, not both.")
    if settings.unfreeze_after is not None and not settings.freeze_backbone:
        raise ValueError("--unfreeze_after only applies with --freeze_backbone.")
    if settings.freeze_backbone and settings.init_weights is None:
        raise ValueError("--freeze_backbone needs pretrained weights: pass --init_weights.")
    if settings.learning_rate is not None and not settings.learning_rate > 0:
        raise ValueError(f"--learning_rate must be positive; received {settings.learning_rate}.")
    if settings.weight_decay is not None and settings.weight_decay < 0:
        raise ValueError(f"--weight_decay must be >= 0; received {settings.weight_decay}.")


def seed_everything(seed, deterministic):
    """Seeds the initialisation (Python, NumPy and TensorFlow generators); ``deterministic`` also makes
    every TensorFlow op deterministic, so that runs with one seed are bit-identical."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _make_model_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:  # a file of that name, or on its path
        raise ValueError(
            f"--model_dir={path!r} cannot be created as a folder ({error.strerror}); pass a new folder or "
            "the folder of the run to resume."
        ) from error


def _remove_failed_checkpoint(folder):
    """Removes what a checkpoint that failed to write left: TensorFlow's ``<prefix>_temp`` folder of
    shards and the temporary of its ``checkpoint`` state file. Complete checkpoints stay."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.endswith("_temp") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith("checkpoint.tmp"):
            os.remove(path)


def _comparable(record):
    """run.json's entries as compared on resuming: the schedule's options (--lr_schedule ...) are left
    out of ``options``, their effect is the ``schedule`` entry."""
    options = {k: v for k, v in record.get("options", {}).items() if k not in training_options.SCHEDULE_FIELDS}
    return {**{k: v for k, v in record.items() if k != "options"}, "options": options}


def _changes(changed):
    return ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())


def _all_finite(variables):
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in variables)


def compute_gradients(model, optimizer, images, labels, global_batch, weight_decay, replicas=1, label_smoothing=0.0):
    """Gradients of one replica's share of the loss over the global batch, with weight decay as
    ``wd/2 * ||w||^2`` on every trainable weight; returns ``(gradients, loss, wrong predictions)``.
    ``labels`` are class indices or soft labels (MixUp, CutMix); see ``regularization.classification_loss``."""
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        logits = tf.cast(model(images, training=True), tf.float32)
        per_example = regularization.classification_loss(labels, logits, label_smoothing)
        loss = tf.reduce_sum(per_example) / global_batch
        total = loss
        if weight_decay:
            l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables])
            total = loss + 0.5 * weight_decay * l2 / replicas
        scaled = optimizer.scale_loss(total)
    grads = tape.gradient(scaled, variables)
    wrong = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) != regularization.hard_labels(labels), tf.float32))
    return grads, loss, wrong


class Trainer:
    """Trains ``config`` with ``settings`` under ``strategy``; ``run()`` returns the final summary."""

    def __init__(self, config, settings, strategy):
        _check_settings(settings)
        self.config = config
        self.settings = settings
        self.strategy = strategy
        self.chief = distribute.is_chief(strategy)
        task_type, task_id = distribute.task(strategy)
        # Workers other than the chief write their checkpoints to a folder of their own.
        self.work_dir = (settings.model_dir if self.chief
                         else os.path.join(settings.model_dir, "workers", f"{task_type}_{task_id}"))
        _make_model_dir(self.work_dir)
        seed_everything(settings.seed, settings.deterministic)
        keras.config.set_dtype_policy(settings.precision)
        if settings.recipe is not None and settings.recipe not in configs.RECIPES:
            raise ValueError(f"Unknown recipe {settings.recipe!r}; known: {sorted(configs.RECIPES)}.")
        self.recipe = configs.RECIPES[settings.recipe or config.recipe]
        self.options = training_options.resolve(config.options, settings.options or {})
        self.augmentation = settings.augmentation or config.augmentation
        self.image_size = settings.image_size or config.image_size
        batch = settings.batch_size
        if batch is None and settings.per_replica_batch_size is None:
            batch = config.batch_size
        self.global_batch = distribute.global_batch_size(strategy, batch, settings.per_replica_batch_size)
        self._open_data()
        self.schedule = schedules.resolve(configs.resolve_schedule(
            self.recipe, self.train_source.num_examples, self.global_batch, epochs=settings.epochs,
            steps=settings.steps, base_lr=settings.learning_rate, lr_scaling=settings.lr_scaling,
            warmup_iterations=self.options.warmup_iterations,
        ), self.options)
        self.weight_decay = self.recipe.weight_decay if settings.weight_decay is None else settings.weight_decay
        self._build()

    # ---------------------------------------------------------------------------------- set-up

    def _open_data(self):
        s, config = self.settings, self.config
        common = dict(source=s.source, manual_dir=s.manual_dir, download=s.download)
        self.train_source = data.load_source(s.data_dir, config.dataset, "train", limit=s.train_examples, **common)
        if s.validation:
            # The paper's model selection: train on the split's first part, test on the held-out images.
            if not config.validation_fraction:
                raise ValueError(f"{config.name} has no validation split of its paper; leave out --validation.")
            self.train_source, self.test_source = data.hold_out(self.train_source, config.validation_fraction)
            if s.eval_examples is not None:
                self.test_source = data.first(self.test_source, s.eval_examples)
        else:
            self.test_source = data.load_source(s.data_dir, config.dataset, "test", limit=s.eval_examples, **common)
        self.classes = s.num_classes or self.train_source.num_classes
        if self.classes < self.train_source.num_classes:
            raise ValueError(
                f"The training data has {self.train_source.num_classes} classes but --num_classes={self.classes}."
            )
        o = self.options
        self.train_transform = data.train_transform(
            self.augmentation, config.dataset, self.image_size, self.train_source.encoded,
            image_augment=augment.rand_augment(o.randaugment_ops, o.randaugment_factor, seed=s.seed))
        self.batch_transform = augment.batch_mix(self.classes, o.mixup_alpha, o.cutmix_factor, seed=s.seed)
        resize = DATASETS[config.dataset].eval_resize_for(self.image_size)
        self.eval_transform = data.eval_transform(
            self.augmentation, config.dataset, self.image_size, resize, "center", self.test_source.encoded)

    def _build(self):
        s = self.settings
        with self.strategy.scope():
            self.model = network.build_network(
                self.config, self.classes, depth=s.depth, image_size=self.image_size,
                init_weights=s.init_weights, scan_units=s.scan_units, remat=s.remat,
                init_classes=DATASETS[self.config.dataset].classes if s.init_weights else None,
                drop_path_rate=self.options.drop_path_rate,
            )
            optimizer = TorchSGD(
                learning_rate=schedules.keras_schedule(self.schedule), momentum=self.recipe.momentum,
                nesterov=self.recipe.nesterov if s.nesterov is None else s.nesterov,
                **regularization.weight_average_options(self.options.ema_decay),
            )
            if s.precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            # Slots for every weight, frozen ones included, so unfreezing later needs no new optimiser.
            self.optimized_variables = list(self.model.trainable_variables)
            optimizer.build(self.optimized_variables)
            self.optimizer = optimizer
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # The metrics rows of the finished epochs (JSON), saved with the weights they belong to.
        self.records = tf.Variable("[]", dtype=tf.string, trainable=False, name="epoch_records")
        self.eval_step = make_eval_step(self.model, self.strategy)
        self.sync_statistics = make_sync_statistics(self.model, self.strategy)
        # Every weight by its index: TensorFlow's object graph does not reach the layers the library's
        # units keep in lists, so model=... alone would lose their BatchNorm moving statistics.
        self.checkpoint = tf.train.Checkpoint(model=self.model, weights=list(self.model.weights),
                                              optimizer=self.optimizer, step=self.step, records=self.records)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.work_dir, CHECKPOINT_DIR), max_to_keep=3)

    def _run_record(self):
        record = {
            "config": self.config.name,
            "global_batch": self.global_batch,
            "steps_per_epoch": self.schedule.steps_per_epoch,
            "total_steps": self.schedule.total_steps,
            "schedule": schedules.record(self.schedule),
            "classes": self.classes,
            # What predict and export need to use the run without flags (keras_preresnet.runs).
            "network": network.network_arguments(self.config, self.classes, depth=self.settings.depth,
                                                 image_size=self.image_size),
            "class_names": self._class_names(),
            "preprocessing": runs.preprocessing_record(self.config.dataset, self.image_size),
        }
        changed = {k: v for k, v in dataclasses.asdict(self.options).items() if v != getattr(self.config.options, k)}
        if changed:
            record["options"] = changed
        return record

    def _class_names(self):
        names = self.train_source.class_names
        if names is None or len(names) != self.classes:
            return None
        return list(names)

    def _check_same_run(self):
        """A model_dir holds one run: resuming with other settings would mix two runs. Its budget and
        learning-rate schedule may change only with ``--extend`` (the run goes on with the new schedule)."""
        path = os.path.join(self.work_dir, runs.RUN_JSON)
        record = self._run_record()
        if os.path.exists(path) and self.manager.latest_checkpoint:
            with open(path, encoding="utf-8") as f:
                previous = json.load(f)
            # Keys an older trainer did not write are not a change of settings.
            previous = _comparable(previous)
            changed = {k: (previous[k], v) for k, v in _comparable(record).items()
                       if k in previous and previous[k] != v}
            budget = {k: change for k, change in changed.items() if k in SCHEDULE_KEYS}
            others = {k: change for k, change in changed.items() if k not in SCHEDULE_KEYS}
            if others:
                raise TrainingError(
                    f"{self.settings.model_dir!r} holds a run with other settings ({_changes(others)}); resume it "
                    "with the same command or use a new --model_dir."
                )
            step = int(self.step.numpy())
            if budget and not self.settings.extend:
                raise TrainingError(
                    f"{self.settings.model_dir!r} holds a run with another budget or schedule ({_changes(budget)}); "
                    "resume it with the same command, pass --extend to continue it on the new schedule from its "
                    f"step {step}, or use a new --model_dir."
                )
            if budget and record["total_steps"] < step:
                raise TrainingError(
                    f"--extend cannot shorten the run in {self.settings.model_dir!r} to {record['total_steps']} "
                    f"steps: its checkpoint is at step {step}."
                )
        files.write_bytes(path, json.dumps(record, indent=2) + "\n")

    # --------------------------------------------------------------------------------- steps

    def _make_steps(self):
        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        global_batch, replicas = self.global_batch, strategy.num_replicas_in_sync
        decay, smoothing = self.weight_decay, self.options.label_smoothing
        variables = model.trainable_variables

        def gradients(images, labels):
            return compute_gradients(model, optimizer, images, labels, global_batch, decay, replicas, smoothing)

        compute = tf.function(gradients, jit_compile=self.settings.xla)

        def replica_step(images, labels):
            grads, loss, wrong = compute(images, labels)
            optimizer.apply(grads, variables)
            return loss, wrong

        @tf.function
        def train_step(iterator):
            loss, wrong = strategy.run(replica_step, args=next(iterator))
            sum_ = tf.distribute.ReduceOp.SUM
            self.step.assign_add(1)
            return strategy.reduce(sum_, loss, axis=None), strategy.reduce(sum_, wrong, axis=None)

        self.train_step = train_step
        self._step_traced = False

    # ------------------------------------------------------------------------------ the run

    def _distributed(self, dataset_fn):
        return distribute.iterate(self.strategy, dataset_fn)

    def _set_frozen(self, epoch):
        s = self.settings
        frozen = s.freeze_backbone and (s.unfreeze_after is None or epoch < s.unfreeze_after)
        if getattr(self, "_frozen", None) != frozen:
            network.set_backbone_trainable(self.model, not frozen)
            self._frozen = frozen
            self._make_steps()

    def _save(self):
        """Checkpoints the current step if the weights are finite; returns whether it did."""
        self.sync_statistics()
        if not _all_finite(self.model.weights):
            return False
        folder = os.path.join(self.work_dir, CHECKPOINT_DIR)
        with files.writing(folder, clean_up=lambda: _remove_failed_checkpoint(folder)):
            self.manager.save(checkpoint_number=int(self.step.numpy()))
        return True

    def run(self):
        """Trains to the end of the schedule, resuming from the last checkpoint; returns the summary."""
        restored = self.manager.restore_or_initialize()
        self._check_same_run()
        step = int(self.step.numpy())
        rows = json.loads(self.records.numpy().decode("utf-8")) if self.chief else []
        writers = None
        try:
            writers = self._summary_writers()
            summary = self._resume_and_train(restored, step, rows, writers)
        except Exception as error:
            # TensorBoard's writer reports a refused write from whichever summary op flushes it.
            failure = files.as_write_error(error) if isinstance(error, tf.errors.OpError) else None
            if failure is None:
                raise
            raise failure from error
        finally:
            # Closed here, not by the garbage collector at exit: a writer of a full disk fails to flush.
            for writer in writers or ():
                with contextlib.suppress(Exception):
                    writer.close()
        # Workers leave together: one that exits while another still writes looks like a crash to
        # the cluster's coordination service.
        self.sync_statistics()
        return summary

    def _resume_and_train(self, restored, step, rows, writers):
        if restored and self.chief:
            print(f"Resuming {self.config.name} from step {step} ({restored}).", flush=True)
            if rows and rows[-1]["step"] == step:
                # A kill may have cut short what the end of that epoch writes after its checkpoint.
                self._publish(rows, writers)
        started = time.time()
        try:
            rows = self._train(step, rows, writers)
        except KeyboardInterrupt:
            # Between two steps the weights and the step counter agree: keep the progress. (Under
            # multi_worker the other workers would wait for this one's collectives: skip it there.)
            if distribute.task(self.strategy)[0] is None and self._save():
                print(f"Interrupted: checkpoint saved at step {int(self.step.numpy())}.", flush=True)
            raise
        summary = self._summary(rows, time.time() - started)
        if self.chief:
            reporting.write_summary(self.work_dir, summary)
        else:
            with self._tested_weights():
                files.save_weights(self.model, os.path.join(self.work_dir, runs.LAST_WEIGHTS))
        return summary

    def _train(self, step, rows, writers):
        """Trains from ``step`` to the end of the schedule, an epoch at a time; returns the metrics rows."""
        steps_per_epoch, total = self.schedule.steps_per_epoch, self.schedule.total_steps
        while step < total:
            epoch = step // steps_per_epoch
            start = step % steps_per_epoch
            steps = min(steps_per_epoch, total - epoch * steps_per_epoch)
            self._set_frozen(epoch)
            epoch_start = time.time()
            step, loss_sum, wrong_sum, lr, traced = self._train_epoch(epoch, start, steps, step, writers)
            seconds = time.time() - epoch_start
            done = steps - start
            # The step function's first call traces and optimises its graph, a one-off cost that is no
            # part of the training speed: images/s counts the other steps.
            timed = done - 1 if traced else done
            images_per_second = (timed * self.global_batch / (seconds - traced) if timed
                                 else done * self.global_batch / seconds)
            if traced and self.chief:
                print(f"Traced the training step in {traced:.1f} s (its first call; left out of images/s).", flush=True)
            self.sync_statistics()
            with self._tested_weights():
                test = evaluate(self.eval_step, self._distributed(
                    data.eval_dataset_fn(self.test_source, self.eval_transform, self.global_batch)),
                    data.padded_size(self.test_source.num_examples, self.global_batch) // self.global_batch)
            row = {
                "epoch": epoch + 1, "step": step, "learning_rate": lr,
                "train_loss": loss_sum / done, "train_error": 100 * wrong_sum / (done * self.global_batch),
                "test_loss": test["loss"], "test_error": test["top1_error"], "test_top5_error": test["top5_error"],
                "epoch_seconds": seconds, "images_per_second": images_per_second,
            }
            if self.chief:
                print(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f}, test error "
                      f"{row['test_error']:.2f}% (top-5 {row['test_top5_error']:.2f}%), "
                      f"{row['images_per_second']:.1f} images/s", flush=True)
            rows = [r for r in rows if r["epoch"] != epoch + 1] + [row]
            self.records.assign(json.dumps(rows))
            if not self._save():
                raise TrainingError(
                    f"The weights became non-finite in epoch {epoch + 1}; stopping. The last good checkpoint "
                    f"is kept: {self.manager.latest_checkpoint}."
                )
            self._publish(rows, writers)
        return rows

    def _train_epoch(self, epoch, start, steps, step, writers):
        """Runs steps ``start..steps`` of ``epoch``; returns the global step, the summed loss and errors,
        the last learning rate, and the seconds of the step function's first call if it was in this epoch
        (else 0)."""
        s = self.settings
        iterator = self._distributed(data.train_dataset_fn(
            self.train_source, self.train_transform, self.global_batch, steps, epoch, start, s.seed,
            self.batch_transform))
        progress = (keras.utils.Progbar(steps, stateful_metrics=["loss", "error", "lr"])
                    if s.progress and self.chief else None)
        if progress:
            print(f"Epoch {epoch + 1}/{self.schedule.epochs}", flush=True)
        loss_sum = wrong_sum = traced = 0.0
        lr = None
        for i in range(start, steps):
            first_call = None if self._step_traced else time.time()
            try:
                loss, wrong = self.train_step(iterator)
            except tf.errors.InvalidArgumentError as error:
                raise data.DataError(
                    f"Could not read a training image from {s.data_dir!r} (corrupt or not an image?): "
                    f"{error.message.splitlines()[0]}"
                ) from error
            loss, wrong = float(loss), float(wrong)
            if first_call is not None:
                traced = time.time() - first_call
                self._step_traced = True
            step += 1
            if not math.isfinite(loss):
                kept = self.manager.latest_checkpoint
                raise TrainingError(
                    f"The training loss became {loss} at step {step} (epoch {epoch + 1}); stopping. "
                    f"The last good checkpoint is kept: {kept or 'none was written yet'}. Lower "
                    "--learning_rate, add a warm-up (--recipe) or check the data, then start again."
                )
            loss_sum += loss
            wrong_sum += wrong
            lr = self.schedule.learning_rate(step - 1)
            if progress:
                done = (i + 1 - start) * self.global_batch
                progress.update(i + 1, [("loss", loss_sum * self.global_batch / done),
                                        ("error", 100 * wrong_sum / done), ("lr", lr)])
            if writers:
                with writers[0].as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("learning_rate", lr)
            if s.checkpoint_steps and step % s.checkpoint_steps == 0 and i + 1 < steps:
                self._save()
        return step, loss_sum, wrong_sum, lr, traced

    def _tested_weights(self):
        """The weights that are tested and saved as last/best: the average with --ema_decay, else the raw ones."""
        return regularization.averaged_weights(self.optimizer, self.optimized_variables)

    def _summary_writers(self):
        if not self.chief:
            return None
        logs = os.path.join(self.work_dir, "logs")
        return (tf.summary.create_file_writer(os.path.join(logs, "train")),
                tf.summary.create_file_writer(os.path.join(logs, "test")))

    def _publish(self, rows, writers):
        """Writes what model_dir shows of the finished epochs ``rows``, the last one just checkpointed."""
        if not self.chief:
            return
        row = rows[-1]
        with self._tested_weights():
            files.save_weights(self.model, os.path.join(self.work_dir, runs.LAST_WEIGHTS))
            if reporting.best_row(rows) is row:
                files.save_weights(self.model, os.path.join(self.work_dir, runs.BEST_WEIGHTS))
        reporting.write_metrics(self.work_dir, rows)
        with writers[1].as_default(step=row["step"]):
            for key in ("test_loss", "test_error", "test_top5_error"):
                tf.summary.scalar(key, row[key])
        with writers[0].as_default(step=row["step"]):
            tf.summary.scalar("epoch_train_error", row["train_error"])
            tf.summary.scalar("images_per_second", row["images_per_second"])
        for writer in writers:
            writer.flush()
        try:
            depth = f" (depth {self.settings.depth})" if self.settings.depth else ""
            plotting.write_curves(self.work_dir, rows, title=self.config.name + depth)
        except ImportError:
            print("matplotlib is not installed: no curves.png (pip install keras_preresnet[train]).")

    def _summary(self, rows, seconds):
        last = rows[-1] if rows else {}
        best = reporting.best_row(rows) or {}
        trained = sum(r["epoch_seconds"] for r in rows)
        per_epoch = [(r["step"] - (rows[i - 1]["step"] if i else 0)) * self.global_batch for i, r in enumerate(rows)]
        images = sum(per_epoch)
        # At each epoch's own rate, which leaves out the step function's tracing (see _train).
        timed = sum(n / r["images_per_second"] for n, r in zip(per_epoch, rows))
        return {
            "config": self.config.name,
            "epochs": last.get("epoch"),
            "steps": last.get("step"),
            "final_test_error": last.get("test_error"),
            "final_test_top5_error": last.get("test_top5_error"),
            "best_test_error": best.get("test_error"),
            "best_epoch": best.get("epoch"),
            "train_seconds": trained,
            "wall_seconds_this_invocation": seconds,
            "images_per_second": images / timed if timed else None,
            "global_batch": self.global_batch,
            "replicas": self.strategy.num_replicas_in_sync,
            "precision": self.settings.precision,
            "xla": self.settings.xla,
            "scan_units": self.settings.scan_units,
            "remat": self.settings.remat,
            **schedules.record(self.schedule),
            "options": dataclasses.asdict(self.options),
            "weight_decay": self.weight_decay,
            "train_examples": self.train_source.num_examples,
            "test_examples": self.test_source.num_examples,
        }


def make_sync_statistics(model, strategy):
    """Averages the BatchNorm moving statistics over the replicas.

    Keras 3 keeps them as un-aggregated mirrored variables, so every replica (and worker) tracks the
    statistics of its own shard. The moving averages are linear in the batch statistics, so averaging
    them at each checkpoint and test gives the same values as synchronising after every step.
    """
    statistics = [v for v in model.non_trainable_variables if v.dtype.startswith("float")]

    def replica_sync():
        context = tf.distribute.get_replica_context()
        means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in statistics])
        for variable, mean in zip(statistics, means):
            variable.assign(mean)

    @tf.function
    def sync():
        strategy.run(replica_sync)

    return sync if statistics else (lambda: None)
