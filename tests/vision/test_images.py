"""Image loading: odd but valid files work, bad ones give one ImageError naming the file."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facesys.errors import ImageError
from facesys.vision.images import MAX_PIXELS, load_image
from tests.conftest import data_path


@pytest.fixture()
def rgb() -> np.ndarray:
    """A 40x60 image with distinct colours in each corner (so rotations are visible)."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[:20, :30] = (255, 0, 0)
    image[:20, 30:] = (0, 255, 0)
    image[20:, :30] = (0, 0, 255)
    image[20:, 30:] = (200, 200, 200)
    return image


def test_rgb_file_round_trips(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 100, dtype=np.uint16).reshape(10, 10)
    Image.fromarray(values).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png")
    assert image.shape == (10, 10, 3) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255
    np.testing.assert_allclose(image[..., 0].astype(float), values / 257.0, atol=1)


def test_palette_rgba_cmyk_grayscale(tmp_path, rgb):
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(rgb).convert("L").save(tmp_path / "l.png")
    for name in ("p.png", "rgba.png", "cmyk.jpg"):
        image = load_image(tmp_path / name)
        assert image.shape == rgb.shape
        assert np.abs(image.astype(int) - rgb).mean() < 12, name
    gray = load_image(tmp_path / "l.png")
    assert gray.shape == rgb.shape and (gray[..., 0] == gray[..., 2]).all()


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png") == 255).all()


def test_exif_orientation_is_honoured(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    image = load_image(tmp_path / "rot.jpg")
    assert image.shape == (60, 40, 3)
    # The top-left red block is shown at the top right after a clockwise turn.
    assert image[5, -5, 0] > 200 and image[5, -5, 1] < 60


def test_arrays_and_pil_images(rgb):
    np.testing.assert_array_equal(load_image(rgb), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)
    assert load_image(rgb[..., 0]).shape == rgb.shape
    np.testing.assert_array_equal(load_image(rgb.astype(np.float32) / 255.0), rgb)
    with pytest.raises(ImageError, match="array"):
        load_image(np.zeros((3, 3, 2), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((3, 3), np.nan, np.float32))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, I am text"), "not an image"),
        (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50), "image"),
    ],
    ids=["missing", "directory", "empty", "text", "garbage-jpeg"],
)
def test_bad_files_name_the_file(tmp_path, make, message):
    path = tmp_path / "photo.jpg"
    make(path)
    with pytest.raises(ImageError, match=f"photo.jpg: .*{message}"):
        load_image(path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with one tiny (wrong) IDAT chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    assert MAX_PIXELS < 100_000 * 100_000
    with pytest.raises(ImageError, match="bomb.png: declared .*refused"):
        load_image(path)


def test_shared_bad_inputs():
    odd = data_path("bad_inputs", "odd_format")
    for name in ("truncated.jpg", "multipage_rgb.tif"):
        with pytest.raises(ImageError, match=name):
            load_image(odd / name)
    for name in ("chessboard_GRAY_U16.tif", "foo3x5x4indexed.png", "palette_gray.png", "no_time_for_that_tiny.gif"):
        image = load_image(odd / name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    chess = load_image(odd / "chessboard_GRAY_U16.tif")
    assert chess.min() < 30 and chess.max() > 220  # 16-bit range kept, not clipped to white
