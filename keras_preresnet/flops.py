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
    total = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            if isinstance(layer, TorchConv2D):
                input_shape = (None,) + tuple(layer.input_spatial_shape or (None, None)) + (None,)
            else:
                input_shape = tuple(layer.input.shape) if hasattr(layer, "_inbound_nodes") else None
            out = layer.compute_output_shape(input_shape[:3] + (layer.kernel.shape[2],))
            if out[1] is None or out[2] is None:
                raise ValueError(
                    f"count_flops needs a fixed input size; layer {layer.name!r} sees {input_shape}. "
                    "Build the model with e.g. input_shape=(224, 224, 3)."
                )
            total += out[1] * out[2] * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            total += math.prod(layer.kernel.shape)
    return total
