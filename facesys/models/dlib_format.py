"""Reader of dlib's serialized DNN files, in pure Python + numpy (no dlib needed).

The format, learned from dlib's own source (davisking/dlib: ``dlib/serialize.h``,
``dlib/cuda/tensor.h``, ``dlib/dnn/core.h``, ``dlib/dnn/layers.h``, ``dlib/dnn/input.h``,
``dlib/dnn/loss.h``):

- integers: one control byte (bit 7 = negative, bits 0-3 = byte count 1..8), then the absolute
  value little-endian; bools: the ASCII byte ``'0'`` or ``'1'``; strings: an integer length and
  the bytes; floats (outside tensors): integer mantissa, then integer exponent
  (``mantissa * 2**exponent``; exponents 32000/32001/32002 mean +inf/-inf/nan).
- tensors: version 2, then num_samples, k, nr, nc, then the values as little-endian float32;
  alias tensors (views into a layer's ``params``) store only version 1 and the four sizes.
- networks are nested templates serialized outside-in: ``add_loss_layer`` writes its version,
  the loss details, then its sub-network; ``add_layer`` writes its version, its sub-network,
  then its layer details and a few state fields; tag and skip layers write a version and their
  sub-network. So the wrappers come outermost first and the layer details innermost first
  (input first, i.e. in forward order).

The reader is driven by the architecture the caller expects (a list of :class:`LayerSpec`, outermost
first), so a file of any other network is refused at the first mismatch with a message that names
the file, the byte offset and what was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesys.errors import ModelError

# The longest layer-name string dlib writes is about 25 bytes; anything longer is not a name.
_MAX_NAME_LEN = 64
_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002


@dataclass(frozen=True)
class LayerSpec:
    """One dlib layer as the caller expects it.

    ``kind`` is one of: ``input_rgb_image_sized``, ``con``, ``affine``, ``relu``, ``max_pool``,
    ``avg_pool``, ``add_prev``, ``fc``, ``tag``, ``skip``, ``loss_metric``. ``args`` holds the
    template arguments that the file must repeat (e.g. ``num_filters``, ``nr``, ``stride``).
    """

    kind: str
    args: dict[str, int] = field(default_factory=dict)


@dataclass
class DlibLayer:
    """One layer read from the file: its kind, the version string found and its values.

    ``arrays`` holds float32 numpy arrays (e.g. ``weight`` (F, C, H, W), ``bias`` (F,)),
    ``values`` holds scalars (strides, paddings, means ...).
    """

    kind: str
    version: str
    values: dict[str, float | int | bool] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class _Stream:
    """Sequential reader of dlib's primitive encodings over an in-memory byte string."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, problem: str) -> ModelError:
        return ModelError(f"{self.path}: not a valid dlib network file: {problem} (byte {self.pos})")

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"file ends early (needed {n} more bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad boolean byte {byte!r}")
        return byte == b"1"

    def string(self) -> str:
        length = self.int()
        if not 0 <= length <= _MAX_NAME_LEN:
            raise self.fail(f"implausible string length {length}")
        try:
            return self._take(length).decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.fail("string is not ASCII") from exc

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        if abs(exponent) > 2000:
            raise self.fail(f"implausible float exponent {exponent}")
        return math.ldexp(mantissa, exponent)

    def _dims(self) -> tuple[int, int, int, int]:
        dims = (self.int(), self.int(), self.int(), self.int())
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor size {dims}")
        return dims

    def tensor(self) -> np.ndarray:
        """A dlib tensor as float32 (num_samples, k, nr, nc)."""
        if (version := self.int()) != 2:
            raise self.fail(f"unknown tensor version {version}")
        dims = self._dims()
        count = math.prod(dims)
        if count * 4 > len(self.data) - self.pos:
            raise self.fail(f"tensor of size {dims} is larger than the rest of the file")
        return np.frombuffer(self._take(count * 4), dtype="<f4").astype(np.float32).reshape(dims)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """The shape of an alias tensor (a view into a layer's params)."""
        if (version := self.int()) != 1:
            raise self.fail(f"unknown alias-tensor version {version}")
        return self._dims()

    def version_string(self, kind: str, accepted: tuple[str, ...]) -> str:
        start = self.pos
        try:
            name = self.string()
        except ModelError:
            self.pos = start
            raise self.fail(f"expected a '{kind}' layer") from None
        if name not in accepted:
            self.pos = start
            raise self.fail(f"expected a '{kind}' layer ({' or '.join(accepted)}), found {name!r}")
        return name


def _slice_params(stream: _Stream, params: np.ndarray, shape: tuple[int, ...], offset: int) -> np.ndarray:
    """The view ``shape`` of the flat ``params`` starting at ``offset`` (dlib's alias_tensor)."""
    flat = params.reshape(-1)
    size = math.prod(shape)
    if offset + size > flat.size:
        raise stream.fail(f"parameter block of {flat.size} values is too small for {shape}")
    return flat[offset : offset + size].reshape(shape).copy()


def _check_args(stream: _Stream, spec: LayerSpec, found: dict[str, int | float | bool]) -> None:
    for key, expected in spec.args.items():
        if key in found and found[key] != expected:
            raise stream.fail(f"'{spec.kind}' layer has {key}={found[key]}, expected {expected}")


def _read_input(s: _Stream, spec: LayerSpec) -> DlibLayer:
    version = s.version_string(spec.kind, ("input_rgb_image_sized",))
    values = {"avg_red": s.float(), "avg_green": s.float(), "avg_blue": s.float(), "nr": s.int(), "nc": s.int()}
    return DlibLayer(spec.kind, version, values)


def _read_con(s: _Stream, spec: LayerSpec) -> DlibLayer:
    version = s.version_string(spec.kind, ("con_4", "con_5", "con_6"))
    params = s.tensor()
    values: dict = {"num_filters": s.int(), "nr": s.int(), "nc": s.int(), "stride_y": s.int(), "stride_x": s.int()}
    values |= {"padding_y": s.int(), "padding_x": s.int()}
    filters, _biases = s.alias_tensor(), s.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.float()
    values["use_bias"] = s.bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        s.bool()  # use_relu: a fused relu only used at training time by dlib's cuDNN path
    _check_args(s, spec, values)
    arrays = {"weight": _slice_params(s, params, filters, 0)}
    if values["use_bias"]:
        arrays["bias"] = _slice_params(s, params, (values["num_filters"],), math.prod(filters))
    return DlibLayer(spec.kind, version, values, arrays)


def _read_affine(s: _Stream, spec: LayerSpec) -> DlibLayer:
    version = s.version_string(spec.kind, ("affine_", "affine_2"))
    params = s.tensor()
    gamma, _beta = s.alias_tensor(), s.alias_tensor()
    values: dict = {"mode": s.int()}
    if version == "affine_2":
        values["disabled"] = s.bool()
    channels = math.prod(gamma)
    arrays = {
        "gamma": _slice_params(s, params, (channels,), 0),
        "beta": _slice_params(s, params, (channels,), channels),
    }
    return DlibLayer(spec.kind, version, values, arrays)


def _read_relu(s: _Stream, spec: LayerSpec) -> DlibLayer:
    version = s.version_string(spec.kind, ("relu_", "relu_2"))
    values = {"disabled": s.bool()} if version == "relu_2" else {}
    return DlibLayer(spec.kind, version, values)


def _read_pool(s: _Stream, spec: LayerSpec) -> DlibLayer:
    version = s.version_string(spec.kind, (f"{spec.kind}_2",))
    values: dict = {"nr": s.int(), "nc": s.int(), "stride_y": s.int(), "stride_x": s.int()}
    values |= {"padding_y": s.int(), "padding_x": s.int()}
    _check_args(s, spec, values)
    return DlibLayer(spec.kind, version, values)


def _read_add_prev(s: _Stream, spec: LayerSpec) -> DlibLayer:
    return DlibLayer(spec.kind, s.version_string(spec.kind, ("add_prev_",)))


def _read_fc(s: _Stream, spec: LayerSpec) -> DlibLayer:
    version = s.version_string(spec.kind, ("fc_2", "fc_3"))
    values: dict = {"num_outputs": s.int(), "num_inputs": s.int()}
    params = s.tensor()
    weights, _biases = s.alias_tensor(), s.alias_tensor()
    values["bias_mode"] = s.int()
    for _ in range(4):
        s.float()
    if version == "fc_3":
        values["use_bias"] = s.bool()
    _check_args(s, spec, values)
    # dlib computes out = x @ W with W of shape (num_inputs, num_outputs).
    arrays = {"weight": _slice_params(s, params, (weights[0], weights[1]), 0)}
    return DlibLayer(spec.kind, version, values, arrays)


def _read_loss_metric(s: _Stream, spec: LayerSpec) -> DlibLayer:
    version = s.version_string(spec.kind, ("loss_metric_", "loss_metric_2"))
    values = {"margin": s.float(), "dist_thresh": s.float()} if version == "loss_metric_2" else {}
    return DlibLayer(spec.kind, version, values)


_DETAIL_READERS = {
    "input_rgb_image_sized": _read_input,
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": _read_pool,
    "avg_pool": _read_pool,
    "add_prev": _read_add_prev,
    "fc": _read_fc,
    "loss_metric": _read_loss_metric,
}


def _read_version(s: _Stream, what: str, accepted: range) -> int:
    version = s.int()
    if version not in accepted:
        raise s.fail(f"unknown {what} version {version}")
    return version


def _read_subnet(s: _Stream, specs: list[LayerSpec], depth: int) -> list[DlibLayer]:
    """Layers ``specs[depth:]`` (outermost first) as read from the file, in forward order."""
    spec = specs[depth]
    if spec.kind == "input_rgb_image_sized":
        return [_read_input(s, spec)]
    if spec.kind in ("tag", "skip"):
        _read_version(s, f"{spec.kind} layer", range(1, 2))
        return [*_read_subnet(s, specs, depth + 1), DlibLayer(spec.kind, spec.kind, dict(spec.args))]
    on_input = specs[depth + 1].kind == "input_rgb_image_sized"
    version = _read_version(s, "add_layer", range(2, 4) if on_input else range(1, 3))
    layers = _read_subnet(s, specs, depth + 1)
    layer = _DETAIL_READERS[spec.kind](s, spec)
    layer.values |= {k: v for k, v in spec.args.items() if k not in layer.values}
    for _ in range(3):  # setup-called, gradient-stale and output-disabled flags
        s.bool()
    s.tensor()  # x_grad
    s.tensor()  # cached_output
    if on_input:
        s.tensor()  # grad_final
        if version == 3:
            s.int()  # sample expansion factor
    elif version == 2:
        s.tensor()  # params_grad
    return [*layers, layer]


def read_dlib_network(path: str | Path, architecture: list[LayerSpec]) -> list[DlibLayer]:
    """Read a serialized dlib network whose structure must be ``architecture``.

    ``architecture`` lists the layers outermost first (loss, ..., input), as dlib's template
    nests them. Returns the layers in forward order (input first, loss last).
    Raises :class:`ModelError` naming the file for a missing, truncated or different file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read dlib network file: {exc.strerror or exc}") from exc
    s = _Stream(data, path)
    if not architecture or architecture[0].kind != "loss_metric":
        raise ValueError("architecture must start with its loss layer")
    _read_version(s, "loss layer", range(1, 2))
    loss = _read_loss_metric(s, architecture[0])
    layers = _read_subnet(s, architecture, 1)
    if s.pos != len(data):
        raise s.fail(f"{len(data) - s.pos} unexpected bytes after the network")
    return [*layers, loss]
