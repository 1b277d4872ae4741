"""Layer responses (ResNet paper, Fig. 7): the standard deviation of each 3x3 layer's output.

The paper measures "the outputs of each 3x3 layer, after BN and before other nonlinearity
(ReLU/addition)". For every 3x3 convolution of a network (the CIFAR stem and the 3x3 convolutions of
the units, in network order) the response read here is therefore

* the output of the BatchNormalization that directly follows the convolution, before any ReLU or
  addition: every convolution of the original, plain and other post-activation units, the first
  convolution of a pre-activation unit (its BN is the second pre-activation, read before its ReLU),
  and the stem of post-activation nets;
* the convolution's own output where no BN follows it: the last convolution of a full
  pre-activation unit (Fig. 4(e) of the Identity Mappings paper) and of the Fig. 4(b) unit, whose
  output is F(x) as it enters the addition, and the stem of a pre-activation CIFAR net.

For a pre-activation unit the matching point of the paper's "after BN, before addition" is thus F(x)
itself, the residual function whose small magnitude the paper's argument is about. The standard
deviation is taken over every element of the response (images, positions and channels), with batch
normalisation in inference mode.

Its command line is ``python -m keras_preresnet.plot_layer_responses``.
"""

import contextlib
import io

import keras
import numpy as np

from keras_preresnet import files, looped_models
from keras_preresnet.layers import TorchConv2D


def response_points(model):
    """``{conv name: layer whose output is its response}`` for each 3x3 convolution.

    The BN after a convolution is the one named like it (``conv2_block1_1_conv`` -> ``conv2_block1_1_bn``):
    layer names follow the keras.applications scheme, in which a convolution's BN carries its number.
    """
    # A looped stage hides its units' layers in one loop body; its unrolled twin has each of them.
    model = looped_models.unroll(model)
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    by_name = {layer.name: layer for layer in layers}
    points = {}
    for layer in layers:
        if isinstance(layer, TorchConv2D) and tuple(layer.kernel_size) == (3, 3):
            norm = by_name.get(layer.name[: -len("conv")] + "bn") if layer.name.endswith("_conv") else None
            points[layer.name] = norm if isinstance(norm, keras.layers.BatchNormalization) else layer
    if not points:
        raise ValueError(f"Model {model.name!r} has no 3x3 TorchConv2D layers whose responses could be measured.")
    return points


class _Moments:
    """Count, mean and sum of squared deviations of every value seen (Chan et al.'s parallel update)."""

    calls = 0  # calls of any instance so far, which orders first_call

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.first_call = None

    def add(self, values):
        if self.first_call is None:
            self.first_call = _Moments.calls
        _Moments.calls += 1
        values = np.asarray(keras.ops.convert_to_numpy(values), dtype=np.float64).ravel()
        n, mean = values.size, values.mean()
        m2 = np.square(values - mean).sum()
        total = self.count + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self):
        return float(np.sqrt(self.m2 / self.count))


@contextlib.contextmanager
def _recording(layers, moments):
    """Feeds every output of each layer of ``layers`` (name -> layer) into ``moments[name]`` while open."""
    for name, layer in layers.items():
        def call(*args, _call=layer.call, _moments=moments[name], **kwargs):
            outputs = _call(*args, **kwargs)
            _moments.add(outputs)
            return outputs

        # An instance attribute shadows the class's call; Keras looks it up on every call.
        object.__setattr__(layer, "call", call)
    try:
        yield
    finally:
        for layer in layers.values():
            object.__delattr__(layer, "call")


def layer_responses(model, images, batch_size=100):
    """Standard deviation of each 3x3 layer's response over ``images`` (preprocessed for ``model``).

    Returns ``{conv name: std}`` in network order; ``ranked`` sorts them as Fig. 7 (bottom) does.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty batch [N, H, W, C]; received shape {images.shape}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received batch_size={batch_size!r}.")
    model = looped_models.unroll(model)
    points = response_points(model)
    moments = {name: _Moments() for name in points}
    with _recording(points, moments):
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size], training=False)
    # The order of first calls is the network order (Keras' layer listing is not).
    order = sorted(points, key=lambda name: moments[name].first_call)
    return {name: moments[name].std for name in order}


def ranked(responses):
    """The standard deviations of ``responses`` in descending order (Fig. 7, bottom)."""
    return sorted(responses.values(), reverse=True)


def draw_layer_responses(responses_by_model):
    """Fig. 7: one line per model, the layers in network order (top) and sorted by std (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), dpi=100)
    for label, responses in responses_by_model.items():
        stds = list(responses.values())
        index = range(1, len(stds) + 1)
        top.plot(index, stds, marker="o", markersize=2, linewidth=1, label=label)
        bottom.plot(index, ranked(responses), marker="o", markersize=2, linewidth=1, label=label)
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for axis in (top, bottom):
        axis.set_ylabel("std")
        axis.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    return figure


def plot_layer_responses(responses_by_model, path):
    """Draws ``{label: layer_responses(...)}`` to the PNG file ``path`` (written atomically)."""
    from matplotlib import pyplot as plt

    figure = draw_layer_responses(responses_by_model)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    files.write_bytes(path, buffer.getvalue())
