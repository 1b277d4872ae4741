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


# Signatures (start) and endings of the formats the serving signature decodes. A JPEG's end marker is
# looked for anywhere after its start: cameras and phones append data after it (up to whole videos).
_PNG = (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82")
_GIF = ((b"GIF87a", b"GIF89a"), b";")
_JPEG = (b"\xff\xd8\xff", b"\xff\xd9")
_BMP = b"BM"


def looks_complete(encoded):
    """In the graph: whether one encoded image (a scalar ``tf.string``) starts like a JPEG, PNG, GIF or BMP
    and is not cut short (PNG: its IEND chunk ends it; GIF: its trailer byte; JPEG: an end-of-image marker
    after the start; BMP: at least the file size its header gives).

    The serving signature names the first image of a request that fails this, without the cost of a
    tf.data pipeline per request; bytes that pass it and still do not decode fail the request with the
    decoder's own error.
    """
    length = tf.strings.length(encoded)

    def starts(prefix):
        return tf.equal(tf.strings.substr(encoded, 0, len(prefix)), prefix)

    def ends(suffix):
        return (length >= len(suffix)) & tf.equal(
            tf.strings.substr(encoded, tf.maximum(length - len(suffix), 0), len(suffix)), suffix)

    png = starts(_PNG[0]) & ends(_PNG[1])
    gif = (starts(_GIF[0][0]) | starts(_GIF[0][1])) & ends(_GIF[1])
    body = tf.io.decode_raw(tf.strings.substr(encoded, tf.minimum(len(_JPEG[0]), length), -1), tf.uint8)
    jpeg = starts(_JPEG[0]) & tf.reduce_any((body[:-1] == _JPEG[1][0]) & (body[1:] == _JPEG[1][1]))
    size_bytes = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded + b"\0" * 6, 2, 4), tf.uint8), tf.int64)
    declared = tf.reduce_sum(size_bytes * tf.constant([1, 1 << 8, 1 << 16, 1 << 24], tf.int64))  # little-endian
    bmp = starts(_BMP) & (length >= 6) & (declared <= tf.cast(length, tf.int64))
    return png | gif | jpeg | bmp
