"""Multiply-add counts of convolution and dense layers (the ResNet paper's "FLOPs")."""

import math

import keras

from keras_preresnet.layers import TorchConv2D


def _all_layers(model):
    return model._flatten_layers(include_self=False, recursive=True)


def count_flops(model):
    """Multiply-adds of one forward pass of one image through ``model``'s convolutions and dense layers.

    Batch normalisation, activations, pooling and additions are not counted, as in the ResNet paper's
    Table 1. The model's input size must be fixed (e.g. ``input_shape=(224, 224, 3)``).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"count_flops takes a built Keras model, e.g. count_flops(keras_preresnet.ResNet50()); "
            f"received the {type(model).__name__} {model!r:.80}."
        )
    total = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            if not isinstance(layer, TorchConv2D):
                raise ValueError(
                    f"count_flops counts keras_preresnet's TorchConv2D layers; {layer.name!r} is a "
                    f"{type(layer).__name__}, whose input size it cannot read."
                )
            input_shape = (None,) + tuple(layer.input_spatial_shape or (None, None)) + (layer.kernel.shape[2],)
            out = layer.compute_output_shape(input_shape)
            if out[1] is None or out[2] is None:
                raise ValueError(
                    f"count_flops needs a fixed input size; layer {layer.name!r} sees {input_shape}. "
                    "Build the model with e.g. input_shape=(224, 224, 3)."
                )
            total += out[1] * out[2] * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            total += math.prod(layer.kernel.shape)
    return total
