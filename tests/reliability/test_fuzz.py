"""Hostile input: random and mutated bytes into the image loader and the dlib-model reader.

Only facesys's own errors may come out (never another exception, a crash or a hang), and sizes
declared in a file are checked before anything that large is allocated.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facesys.errors import FacesysError, ImageError, ModelError
from facesys.models.dlib_format import read_dlib_network
from facesys.models.dlib_resnet import dlib_architecture
from facesys.vision.images import load_image


def valid_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    out = []
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("TIFF", "CMYK"), ("BMP", "L"), ("WEBP", "RGB")):
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


VALID = valid_images()
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def load_bytes(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageError as exc:
        assert "fuzz.img" in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(tmp_path, data):
    load_bytes(tmp_path, data)


@FUZZ
@given(
    which=st.integers(0, len(VALID) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_images(tmp_path, which, flips, cut):
    data = bytearray(VALID[which])
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    load_bytes(tmp_path, bytes(data))


@pytest.fixture(scope="module")
def dlib_bytes(dlib_files) -> bytes:
    return dlib_files[0].read_bytes()


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 22_500_000)),
)
def test_mutated_dlib_files(tmp_path, dlib_bytes, flips, cut):
    data = bytearray(dlib_bytes)
    for position, value in flips:  # the header and first layers hold sizes and names
        data[position] = value
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "model.dat"
    path.write_bytes(bytes(data))
    try:
        layers = read_dlib_network(path, dlib_architecture())
    except ModelError as exc:
        assert "model.dat" in str(exc)
        return
    assert layers[-1].kind == "loss_metric"  # a flip inside weights can leave a valid file


@FUZZ
@given(data=st.binary(max_size=512))
def test_random_dlib_files(tmp_path, data):
    path = tmp_path / "random.dat"
    path.write_bytes(data)
    with pytest.raises(FacesysError):
        read_dlib_network(path, dlib_architecture())
