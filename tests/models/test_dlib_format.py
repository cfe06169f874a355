"""The dlib file reader: primitive encodings, the real file, and files it must refuse."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from facesys.errors import ModelError
from facesys.models.dlib_format import LayerSpec, _Stream, read_dlib_network
from facesys.models.dlib_resnet import dlib_architecture


def dlib_int(value: int) -> bytes:
    """dlib's integer encoding, written independently of the reader."""
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def dlib_string(text: str) -> bytes:
    return dlib_int(len(text)) + text.encode()


def stream(data: bytes) -> _Stream:
    return _Stream(data, Path("test.dat"))


@pytest.mark.parametrize("value", [0, 1, -1, 255, 256, -70000, 2**40, -(2**62)])
def test_integers_round_trip(value):
    assert stream(dlib_int(value)).int() == value


def test_zero_is_one_byte_of_size_one():
    # dlib writes 0 as control byte 0x01 followed by 0x00.
    assert stream(b"\x01\x00").int() == 0


def test_floats_are_mantissa_then_exponent():
    assert stream(dlib_int(3) + dlib_int(-2)).float() == 0.75
    assert stream(dlib_int(5) + dlib_int(32000)).float() == math.inf
    assert stream(dlib_int(5) + dlib_int(32001)).float() == -math.inf
    assert math.isnan(stream(dlib_int(5) + dlib_int(32002)).float())


def test_tensor_is_little_endian_float32():
    values = np.arange(6, dtype="<f4") * 0.5
    data = dlib_int(2) + b"".join(dlib_int(n) for n in (1, 2, 3, 1)) + values.tobytes()
    tensor = stream(data).tensor()
    assert tensor.shape == (1, 2, 3, 1)
    np.testing.assert_array_equal(tensor.reshape(-1), values)


def test_bad_primitives_are_refused_with_the_file_name():
    with pytest.raises(ModelError, match="test.dat.*control byte"):
        stream(b"\x00").int()
    with pytest.raises(ModelError, match="ends early"):
        stream(b"\x04\x01").int()
    with pytest.raises(ModelError, match="boolean"):
        stream(b"x").bool()
    huge = dlib_int(2) + b"".join(dlib_int(n) for n in (10**6, 10**3, 1, 1))
    with pytest.raises(ModelError, match="larger than the rest"):
        stream(huge).tensor()


def test_the_real_file_reads_completely(dlib_files):
    layers = read_dlib_network(dlib_files[0], dlib_architecture())
    kinds = [layer.kind for layer in layers]
    assert kinds[0] == "input_rgb_image_sized" and kinds[-1] == "loss_metric"
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    convs = [layer.arrays["weight"].shape for layer in layers if layer.kind == "con"]
    assert convs[0] == (32, 3, 7, 7) and convs[-1] == (256, 256, 3, 3)
    (fc,) = [layer for layer in layers if layer.kind == "fc"]
    assert fc.arrays["weight"].shape == (256, 128)
    assert all(np.isfinite(a).all() for layer in layers for a in layer.arrays.values())


def test_another_dlib_file_is_refused(dlib_files):
    with pytest.raises(ModelError, match="shape_predictor_5_face_landmarks.dat"):
        read_dlib_network(dlib_files[1], dlib_architecture())


def test_truncated_and_corrupt_copies_are_refused(dlib_files, tmp_path):
    data = dlib_files[0].read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated.dat: not a valid dlib network file"):
        read_dlib_network(truncated, dlib_architecture())
    renamed = tmp_path / "renamed.dat"
    renamed.write_bytes(data.replace(b"loss_metric_2", b"loss_metric_9", 1))
    with pytest.raises(ModelError, match="renamed.dat.*'loss_metric_9'"):
        read_dlib_network(renamed, dlib_architecture())
    trailing = tmp_path / "trailing.dat"
    trailing.write_bytes(data + b"\x00")
    with pytest.raises(ModelError, match="unexpected bytes"):
        read_dlib_network(trailing, dlib_architecture())


def test_a_network_of_other_shape_is_refused(dlib_files):
    other = dlib_architecture()
    other[1] = LayerSpec("fc", {"num_outputs": 64})
    with pytest.raises(ModelError, match="num_outputs=128, expected 64"):
        read_dlib_network(dlib_files[0], other)


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="nothing.dat"):
        read_dlib_network(tmp_path / "nothing.dat", dlib_architecture())


def test_struct_sanity_of_float_bytes():
    # The tensor payload is IEEE float32 little-endian, as struct writes it.
    data = dlib_int(2) + b"".join(dlib_int(n) for n in (1, 1, 1, 1)) + struct.pack("<f", 1.5)
    assert stream(data).tensor().item() == 1.5
