"""Inference-only transforms: BatchNorm folded into the convolution it follows."""

import keras
import numpy as np

from keras_preresnet import looped_models
from keras_preresnet.layers import ResidualUnit, TorchConv2D


@keras.saving.register_keras_serializable(package="keras_preresnet")
class FoldedBatchNorm(keras.layers.Layer):
    """Stands where a BatchNorm was folded into the convolution before it: passes its input on."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _bn_affine(bn):
    """Per-channel ``scale, shift`` with ``BN(x) = scale * x + shift`` in inference mode."""
    numpy = keras.ops.convert_to_numpy
    gamma = numpy(bn.gamma) if bn.scale else 1.0
    beta = numpy(bn.beta) if bn.center else 0.0
    mean, var = numpy(bn.moving_mean), numpy(bn.moving_variance)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _folded_conv_weights(conv, bn):
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    bias = keras.ops.convert_to_numpy(conv.bias) if conv.use_bias else 0.0
    scale, shift = _bn_affine(bn)
    return [kernel * scale, bias * scale + shift]


def _transfer_unit(source, target):
    """Copies ``source``'s weights into its folded twin; the twin's ``'conv+bn'`` ops (decided by
    ``ResidualUnit.branch_ops(folded=True)``) say which convolution takes the BatchNorm after it."""
    source_layers = iter(source.branch_layers)
    for op, new in target.branch_steps():
        if op == "conv+bn":
            new.set_weights(_folded_conv_weights(next(source_layers), next(source_layers)))
        elif new is not None:
            new.set_weights(next(source_layers).get_weights())
    if source.projection_conv is not None:
        if source.projection_norm is not None:
            weights = _folded_conv_weights(source.projection_conv, source.projection_norm)
        else:
            weights = source.projection_conv.get_weights()
        target.projection_conv.set_weights(weights)
    for old, new in zip(source.after_layers, target.after_layers):
        new.set_weights(old.get_weights())
    if source.combine is not None:
        target.combine.set_weights(source.combine.get_weights())


def _conv_bn_pairs(model):
    """Top-level ``{bn name: conv}`` where a BatchNorm is the only consumer of a convolution."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        parents = layer._inbound_nodes[0].parent_nodes
        if len(parents) != 1:
            continue
        conv = parents[0].operation
        if isinstance(conv, TorchConv2D) and len(conv._outbound_nodes) == 1:
            pairs[layer.name] = conv
    return pairs


def fold_batchnorm(model):
    """Returns an inference copy of ``model`` with BatchNorm folded into the preceding convolution.

    Every BN that directly follows a convolution (all of them in the original unit; the inner ones of a
    pre-activation unit, whose first BN acts on the sum of the previous unit and cannot fold) is merged
    into that convolution: ``W' = W * s``, ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.
    The copy computes what ``model(x, training=False)`` computes, with fewer ops. It is for inference
    and export only: training it would train without those BatchNorms.
    """
    # Folding rewrites units one by one; a looped stage folds as its unrolled units.
    model = looped_models.unroll(model)
    pairs = _conv_bn_pairs(model)
    folded_convs = {conv.name for conv in pairs.values()}

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, ResidualUnit):
            config["fold_batchnorm"] = True
            return type(layer).from_config(config)
        if layer.name in folded_convs:
            config["use_bias"] = True
            return type(layer).from_config(config)
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name)
        return type(layer).from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    bn_of_conv = {conv.name: model.get_layer(bn) for bn, conv in pairs.items()}
    for layer, new in zip(model.layers, folded.layers):
        if isinstance(layer, ResidualUnit):
            _transfer_unit(layer, new)
        elif layer.name in bn_of_conv:
            new.set_weights(_folded_conv_weights(layer, bn_of_conv[layer.name]))
        elif layer.name not in pairs and layer.weights:
            new.set_weights(layer.get_weights())
    return folded
