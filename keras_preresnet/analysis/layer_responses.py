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

    python -m keras_preresnet.analysis.layer_responses --model=plain20=runs/p20/best.weights.h5 \\
        --model=resnet20=runs/r20/best.weights.h5 --output=fig7.png
"""

import argparse
import contextlib
import io
import json
import os
import sys

import keras
import numpy as np

from keras_preresnet.layers import TorchConv2D


def response_points(model):
    """``{conv name: layer whose output is its response}`` for each 3x3 convolution.

    The BN after a convolution is the one named like it (``conv2_block1_1_conv`` -> ``conv2_block1_1_bn``):
    layer names follow the keras.applications scheme, in which a convolution's BN carries its number.
    """
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
    _atomic_write(path, buffer.getvalue())


def _atomic_write(path, data):
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------- command line


def _resolve(name):
    from keras_preresnet import models

    for key in models.ARCHITECTURES:
        if name in (key, models.public_name(key)):
            return key
    raise ValueError(f"Unknown model {name!r}; known: {', '.join(sorted(models.ARCHITECTURES))}.")


def _images_for(layout, cifar_dir, count):
    from keras_preresnet import datasets, defaults, preprocessing

    raw, _ = datasets.load_cifar(cifar_dir, "cifar10", "test")
    raw = raw[:count]
    if layout == "cifar":
        return ((raw.astype("float32") - np.array(defaults.CIFAR10_MEAN)) / np.array(defaults.CIFAR10_STD)).astype(
            "float32")
    return preprocessing.preprocess_input(raw)


def main(argv=None):
    from keras_preresnet import models

    parser = argparse.ArgumentParser(
        prog="python -m keras_preresnet.analysis.layer_responses",
        description="Draw the ResNet paper's Fig. 7 (std of each 3x3 layer's response) for several models.",
    )
    parser.add_argument("--model", action="append", required=True, metavar="NAME[=WEIGHTS]",
                        help="an architecture (e.g. resnet20, PlainNet56, preact_resnet200) and optionally its "
                             "weights ('imagenet' or a weights file, e.g. a run's best.weights.h5); repeat "
                             "for each model to draw")
    parser.add_argument("--cifar_dir", default=os.environ.get("KERAS_PRERESNET_CIFAR_DIR"),
                        help="folder holding cifar-10-batches-py; its test images are the inputs "
                             "(default: $KERAS_PRERESNET_CIFAR_DIR)")
    parser.add_argument("--images", type=int, default=500, help="test images to use (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=None, help="classes of the weights' head if not the layout's")
    parser.add_argument("--output", required=True, help="the PNG file to write")
    parser.add_argument("--json", default=None, help="also write the standard deviations to this JSON file")
    args = parser.parse_args(argv)
    if not args.cifar_dir:
        parser.error("--cifar_dir is required (or set KERAS_PRERESNET_CIFAR_DIR).")
    if args.images < 1:
        parser.error(f"--images must be a positive integer; received {args.images}.")
    try:
        results = {}
        for spec in args.model:
            name, _, weights = spec.partition("=")
            key = _resolve(name)
            layout = models.ARCHITECTURES[key]["layout"]
            model = models.build_named(key, weights=weights or None, classes=args.classes)
            label = models.public_name(key) + (f" ({os.path.basename(weights)})" if weights else " (untrained)")
            results[label] = layer_responses(model, _images_for(layout, args.cifar_dir, args.images))
            print(f"{label}: {len(results[label])} 3x3 layers, mean std {np.mean(ranked(results[label])):.3f}",
                  flush=True)
        plot_layer_responses(results, args.output)
        if args.json:
            _atomic_write(args.json, (json.dumps(results, indent=2) + "\n").encode("utf-8"))
    except (ValueError, OSError) as error:
        print(f"layer_responses: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
