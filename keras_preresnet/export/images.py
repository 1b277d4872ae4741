"""Image folders for parity checks and int8 calibration: JPEG and PNG files read as encoded bytes."""

import os

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_images(directory, limit=None, purpose="images"):
    """The JPEG/PNG files directly in ``directory``, sorted by name; a clear error if there are none."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"The {purpose} folder {directory!r} does not exist.")
    files = sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(directory, name))
    )
    if not files:
        raise ValueError(
            f"The {purpose} folder {directory!r} holds no images; put JPEG or PNG files "
            f"({', '.join(IMAGE_EXTENSIONS)}) directly in it."
        )
    return files[:limit] if limit else files


def read_encoded(files):
    """The raw bytes of each file (what a client sends to the serving signature)."""
    encoded = []
    for path in files:
        with open(path, "rb") as f:
            encoded.append(f.read())
    return encoded


def decode(encoded, path="<bytes>"):
    """Encoded JPEG/PNG bytes -> uint8 RGB ``[H, W, 3]`` tensor."""
    try:
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{path} is not a readable JPEG or PNG image: {error.message}") from error


def preprocessed_batch(servable, files):
    """Reads, decodes and preprocesses image files into the model's float input ``[N, size, size, 3]``."""
    return np.stack(
        [servable.preprocess(decode(data, path)).numpy() for path, data in zip(files, read_encoded(files))]
    ).astype(np.float32)
