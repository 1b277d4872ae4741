"""Augmentation beside the papers' recipes, from ``keras.layers``: RandAugment per image, MixUp and
CutMix per batch (their labels become soft, one-hot mixtures).

The layers run inside the ``tf.data`` pipeline. CutMix's labels are mixed by the fraction of pixels
actually pasted: Keras weights them by the area of the real-valued box, which differs from the pixel
count by up to a row and a column of the box (timm's ``correct_lam`` does the same correction).
"""

import keras
import tensorflow as tf

# With both MixUp and CutMix on, each batch gets one of them, CutMix with this probability (timm's switch_prob).
CUTMIX_PROBABILITY = 0.5


def rand_augment(num_ops, factor, seed=None):
    """A per-image map ``uint8/float [H, W, 3] (0-255) -> float [H, W, 3] (0-255)``, or None when off."""
    if not num_ops:
        return None
    layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=factor, seed=seed)

    def transform(image):
        return layer(tf.cast(image, tf.float32))

    return transform


def _mixup(layer):
    def mix(images, labels):
        out = layer({"images": images, "labels": labels})
        return out["images"], out["labels"]

    return mix


def _cutmix(layer):
    def mix(images, labels):
        transformation = layer.get_random_transformation(images, training=True)
        mixed = layer.transform_images(images, transformation)
        # Share of each image's pixels that came from its partner: the partner's label weight.
        pasted = tf.reduce_mean(tf.cast(transformation["batch_masks"], tf.float32), axis=[1, 2, 3])[:, None]
        partner = tf.gather(labels, transformation["permutation_order"])
        return mixed, (1.0 - pasted) * labels + pasted * partner

    return mix


def batch_mix(classes, mixup_alpha=0.0, cutmix_factor=0.0, seed=None):
    """A per-batch map ``(images, int labels) -> (mixed images, soft labels [B, classes])``, or None
    when both MixUp and CutMix are off."""
    mixes = []
    if mixup_alpha:
        mixes.append(_mixup(keras.layers.MixUp(alpha=mixup_alpha, seed=seed)))
    if cutmix_factor:
        mixes.append(_cutmix(keras.layers.CutMix(factor=cutmix_factor, seed=seed)))
    if not mixes:
        return None

    def transform(images, labels):
        soft = tf.one_hot(tf.cast(labels, tf.int32), classes)
        if len(mixes) == 1:
            return mixes[0](images, soft)
        cut = tf.random.uniform([]) < CUTMIX_PROBABILITY
        return tf.cond(cut, lambda: mixes[1](images, soft), lambda: mixes[0](images, soft))

    return transform
