"""export.images: image folders for parity and calibration."""

import numpy as np
import pytest

import export_testing
from keras_preresnet.export import images


def test_lists_jpeg_and_png_files_sorted_and_limited(tmp_path, cifar_dir):
    written = export_testing.write_cifar_images(cifar_dir, tmp_path, count=4)
    (tmp_path / "notes.txt").write_text("not an image")
    assert images.list_images(tmp_path) == sorted(written)
    assert images.list_images(tmp_path, limit=3) == sorted(written)[:3]


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"calibration folder .* holds no images; put JPEG or PNG"):
        images.list_images(tmp_path, purpose="calibration")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="parity folder .* does not exist"):
        images.list_images(tmp_path / "absent", purpose="parity")


def test_preprocessed_batch_decodes_png_losslessly(tmp_path, cifar_dir):
    files = export_testing.write_cifar_images(cifar_dir, tmp_path, count=2)
    servable = export_testing.tiny_servable()
    batch = images.preprocessed_batch(servable, files)
    assert batch.shape == (2, 32, 32, 3) and batch.dtype == np.float32
    png = images.decode(open(files[1], "rb").read()).numpy()
    np.testing.assert_allclose(batch[1], servable.preprocess(png).numpy())


def test_undecodable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match="broken.png is not a readable JPEG or PNG image"):
        images.preprocessed_batch(export_testing.tiny_servable(), [str(bad)])


def _encoded_in_every_format(cifar_dir):
    import tensorflow as tf
    from keras_preresnet.datasets import load_cifar

    pixels = load_cifar(cifar_dir, "cifar10", "test")[0][0]
    formats = {"png": tf.io.encode_png(pixels).numpy(), "jpeg": tf.io.encode_jpeg(pixels).numpy()}
    # A 2x2 24-bit BMP (54-byte header, rows padded to 4 bytes) and a 1x1 GIF89a, by hand.
    rows = (bytes([0, 0, 255, 0, 255, 0]) + b"\0\0") * 2
    formats["bmp"] = (b"BM" + (54 + len(rows)).to_bytes(4, "little") + b"\0" * 4 + (54).to_bytes(4, "little")
                      + (40).to_bytes(4, "little") + (2).to_bytes(4, "little") + (2).to_bytes(4, "little")
                      + (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + b"\0" * 24 + rows)
    formats["gif"] = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\x00\x00\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00"
                      b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    return formats


def test_looks_complete_accepts_whole_images_and_refuses_cut_or_foreign_bytes(cifar_dir):
    import tensorflow as tf

    formats = _encoded_in_every_format(cifar_dir)
    for name, data in formats.items():
        tf.io.decode_image(data, channels=3, expand_animations=False)  # each is a real image of its format
        assert bool(images.looks_complete(tf.constant(data))), name
        for cut in (len(data) // 3, len(data) - 1):
            assert not bool(images.looks_complete(tf.constant(data[:cut]))), (name, cut)
    # Data after a JPEG's end marker (phones append whole videos) is still a whole JPEG.
    assert bool(images.looks_complete(tf.constant(formats["jpeg"] + b"\0" * 500)))
    for foreign in (b"", b"BM", b"not an image", b"%PDF-1.4 ..." + b"IEND\xaeB`\x82"):
        assert not bool(images.looks_complete(tf.constant(foreign))), foreign
