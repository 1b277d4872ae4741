"""The training loss with label smoothing and soft (mixed) labels, and the weight average (EMA) the
trainer tests and saves.

Label smoothing (Szegedy et al. 2016, Sec. 7) trains on ``q = (1 - e) y + e / K`` instead of the
one-hot ``y`` of K classes; MixUp and CutMix give soft ``y`` already, and smoothing applies on top.
With neither, the loss is the plain sparse cross-entropy of the papers.

The weight average keeps ``a <- d a + (1 - d) w`` of every trainable weight after each step (the
optimiser's ``use_ema``; its slots are checkpointed with the rest). BatchNorm's moving statistics are
running averages already and are shared by the raw and the averaged weights.
"""

import contextlib

import keras
import tensorflow as tf


def classification_loss(labels, logits, label_smoothing=0.0):
    """Per-example cross-entropy of ``logits`` against int ``labels`` [B] or soft ``labels`` [B, K]."""
    if labels.shape.rank == 1 and not label_smoothing:
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    if labels.shape.rank == 1:
        labels = tf.one_hot(tf.cast(labels, tf.int32), logits.shape[-1])
    return keras.losses.categorical_crossentropy(labels, logits, from_logits=True, label_smoothing=label_smoothing)


def hard_labels(labels):
    """The class each example counts as for the training error: the label, or a mixture's largest share."""
    return labels if labels.shape.rank == 1 else tf.argmax(labels, -1)


def weight_average_options(ema_decay):
    """Optimiser arguments that keep the weight average (none when ``ema_decay`` is 0)."""
    return dict(use_ema=True, ema_momentum=ema_decay) if ema_decay else {}


@contextlib.contextmanager
def averaged_weights(optimizer, variables):
    """Within the block, ``variables`` (those the optimiser was built with) hold their averages; the
    raw weights come back afterwards. A no-op for an optimiser without ``use_ema``."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
    if not inner.use_ema:
        yield
        return
    raw = [tf.identity(v.value) for v in variables]
    inner.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)
