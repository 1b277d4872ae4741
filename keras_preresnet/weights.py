"""Pretrained weights: the table of published checkpoints and loading into a built model."""

import os

# Architectures with published ImageNet weights (filled by the pretrained-weights work).
PRETRAINED = {}


def load_into(model, weights, architecture=None, include_top=True):
    """Loads ``weights`` (a Keras weights file) into ``model``."""
    path = os.fspath(weights)
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"Could not load the weights file {path!r} into model {model.name!r}: {error}. "
            "Check that the file was saved from the same architecture and arguments."
        ) from error
