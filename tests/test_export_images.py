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
