"""The user's own models: ONNX embedding networks prepared once into the models folder
(``facesys.config.models_dir()``, ``$FACESYS_MODELS``) and registered beside the built-in ones.

A prepared model is two files: ``<name>-<sha256[:16]>.onnx``, the folded fp32 graph
(facesys/models/onnx_graph.py), and ``<name>.json``, its description (kind, chip and embedding
size, input normalisation, threshold, the licence the user declared, the source file's sha256).
Both are written atomically, the description last: it names the graph it describes, so a killed
prepare leaves the previous model (or none) intact. ``model_id`` is ``name@<sha256 prefix of the
graph file>``. Reading the folder imports neither torch nor onnx (``facesys models`` stays fast).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from facesys.config import models_dir
from facesys.errors import ModelError
from facesys.hashing import file_sha256
from facesys.models._registry import _REGISTRY, ModelSpec, get_model_spec, list_models, register_model
from facesys.models.onnx_model import KINDS, arcface_template

if TYPE_CHECKING:
    from torch import nn

FORMAT = "facesys-onnx-model"
VERSION = 1
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # also a file name; no "@" (model ids), no "/"
CALIBRATE = "benchmarks/calibrate_default_threshold.py --model {name}"

_lock = threading.Lock()
_registered: dict[str, tuple[dict, ModelSpec]] = {}  # name -> (description, spec) of the user models registered


def prepare_onnx_model(
    name: str, source: str | Path, kind: str = "arcface", licence: str = "", threshold: float | None = None
) -> ModelSpec:
    """Check the ONNX embedding network ``source`` and keep it as the user model ``name``.

    Replaces an earlier user model of that name. ``kind`` picks the input normalisation when the
    graph does not normalise itself and the default threshold (facesys/models/onnx_model.py);
    ``licence`` is recorded as declared. ModelError (one line) for a name facesys cannot take or a
    file it cannot run; nothing is written then.
    """
    from facesys.models.onnx_model import check_onnx_model

    _check_name(name)
    source = Path(source)
    if threshold is not None and not 0 < threshold <= 2:
        raise ModelError(f"threshold {threshold}: not a distance between unit vectors (0 < t <= 2)", parameter="threshold")
    model, facts = check_onnx_model(source, kind)
    try:
        data = model.SerializeToString()
    except Exception as exc:  # protobuf refuses a model over 2 GB
        raise ModelError(f"{source}: the folded graph cannot be written as one ONNX file ({type(exc).__name__})") from None
    sha = hashlib.sha256(data).hexdigest()
    folder = models_dir()
    graph_file = f"{name}-{sha[:16]}.onnx"
    description = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "kind": kind,
        "graph": graph_file,
        "sha256": sha,
        "source_file": source.name,
        "source_sha256": file_sha256(source),
        "input_size": facts.input_size,
        "embedding_dim": facts.embedding_dim,
        "normalisation": {"mean": facts.mean, "std": facts.std, "by_graph": facts.by_graph},
        "threshold": KINDS[kind].threshold if threshold is None else float(threshold),
        "threshold_source": "default" if threshold is None else "given",
        "licence": licence.strip(),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / graph_file, data)
        _write_atomic(folder / f"{name}.json", json.dumps(description, indent=2).encode())
    except OSError as exc:
        raise ModelError(f"{folder}: cannot write the prepared model ({exc.strerror or type(exc).__name__})") from None
    for stale in _graph_files(folder, name):
        if stale.name != graph_file:
            stale.unlink(missing_ok=True)
    return get_model_spec(name)


def update_user_model(name: str, licence: str | None = None, threshold: float | None = None) -> ModelSpec:
    """Change the declared licence or the threshold of the user model ``name`` (its graph and
    ``model_id`` stay: the embeddings do not change)."""
    if threshold is not None and not 0 < threshold <= 2:
        raise ModelError(f"threshold {threshold}: not a distance between unit vectors (0 < t <= 2)", parameter="threshold")
    description = dict(_user_description(name))
    if licence is not None:
        description["licence"] = licence.strip()
    if threshold is not None:
        description["threshold"], description["threshold_source"] = float(threshold), "given"
    path = models_dir() / f"{name}.json"
    try:
        _write_atomic(path, json.dumps(description, indent=2).encode())
    except OSError as exc:
        raise ModelError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None
    return get_model_spec(name)


def remove_user_model(name: str) -> list[Path]:
    """Delete the user model ``name`` (description first, then its graph); the files removed."""
    _user_description(name)
    folder = models_dir()
    removed = [folder / f"{name}.json", *_graph_files(folder, name)]
    for path in removed:
        path.unlink(missing_ok=True)
    list_models()  # forget it in the registry
    return removed


def is_user_model(name: str) -> bool:
    """Whether ``name`` is one of the user's prepared models (a built-in name never is)."""
    list_models()
    return name in _registered


def register_user_models() -> None:
    """Bring the registry in step with the models folder: register each prepared model whose name
    no built-in model has, forget the ones removed. A description facesys cannot read is skipped."""
    found: dict[str, dict] = {}
    folder = models_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            description = json.loads(path.read_text())
            graph = str(description.get("graph", ""))
            if (
                description.get("format") == FORMAT
                and description.get("version", 0) <= VERSION
                and description.get("name") == path.stem
                and graph == Path(graph).name  # a file in the folder, nowhere else
            ):
                found[path.stem] = description
        except (OSError, ValueError, AttributeError):  # AttributeError: JSON that is not an object
            continue
    with _lock:
        for name in [name for name in _registered if name not in found]:
            if _REGISTRY.get(name) is _registered.pop(name)[1]:
                del _REGISTRY[name]
        for name, description in found.items():
            if name in _registered and _registered[name][0] == description:
                continue
            if name in _REGISTRY and name not in _registered:
                continue  # a built-in model of that name wins
            try:
                spec = _spec(folder, description)
            except (KeyError, TypeError, ValueError):
                continue
            _registered[name] = (description, register_model(spec))


def _spec(folder: Path, description: dict) -> ModelSpec:
    """The ModelSpec of a description; the graph is read and converted only when built."""
    name, kind = description["name"], description["kind"]
    graph = folder / description["graph"]
    sha, size = description["sha256"], int(description["input_size"])
    mean, std = float(description["normalisation"]["mean"]), float(description["normalisation"]["std"])
    threshold = float(description["threshold"])
    if description.get("threshold_source") == "given":
        note = f"threshold {threshold} set by the user"
    else:
        note = f"threshold {threshold} is an UNCALIBRATED default for {kind} models: calibrate it ({CALIBRATE.format(name=name)})"
    by_graph = description["normalisation"].get("by_graph")
    input_text = "raw RGB 0-255 (the graph normalises)" if by_graph else f"(RGB - {mean:g}) / {std:g}"

    def build() -> nn.Module:
        import onnx

        from facesys.models.onnx_model import onnx_backbone

        try:
            data = graph.read_bytes()
        except OSError as exc:
            raise ModelError(f"{graph}: prepared model {name!r} cannot be read ({exc.strerror}); prepare it again") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise ModelError(f"{graph}: prepared model {name!r} is damaged (sha256 differs); prepare it again")
        return onnx_backbone(onnx.load_from_string(data), mean, std, graph)

    def load_weights(backbone: nn.Module, weights: str | None) -> str:
        if weights is not None:
            raise ModelError(
                f"{weights}: model {name!r} is a prepared ONNX model and carries its own weights; "
                "prepare it again from the new file instead",
                parameter="weights",
            )
        return sha

    return ModelSpec(
        name=name,
        description=f"your ONNX model ({kind}, from {description['source_file']}; input {input_text}); {note}",
        architecture=f"onnx-{name}",
        input_size=size,
        template=arcface_template(size),
        embedding_dim=int(description["embedding_dim"]),
        threshold=threshold,
        build=build,
        load_weights=load_weights,
        weights_location=lambda: str(graph),
        licence=str(description.get("licence", "")),
    )


def _check_name(name: str) -> None:
    """ModelError unless ``name`` can name a new user model: the name rule, and no built-in model's name."""
    if not NAME_RULE.fullmatch(name) or name.endswith((".pt", ".pth", ".onnx")):
        raise ModelError(
            f"model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(not ending in .pt, .pth or .onnx)"
        )
    builtin = [known for known in list_models() if known not in _registered]
    clash = [known for known in builtin if known.casefold() == name.casefold()]
    if clash:
        raise ModelError(f"model name {name!r}: taken by the built-in model {clash[0]!r}; choose another name for your own model")


def _user_description(name: str) -> dict:
    """The description of the user model ``name``, or ModelError (built-in or unknown)."""
    if is_user_model(name):
        return _registered[name][0]
    if name in list_models():
        raise ModelError(f"model {name!r} is built in, not one of your prepared models")
    raise ModelError(f"model {name!r}: no prepared model of that name in {models_dir()}")


def _graph_files(folder: Path, name: str) -> list[Path]:
    """The graph files of the model ``name`` (exactly ``<name>-<16 hex>.onnx``: never another model's)."""
    rule = re.compile(re.escape(name) + r"-[0-9a-f]{16}\.onnx")
    return [path for path in folder.glob("*.onnx") if rule.fullmatch(path.name)]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as out:  # the umask's permissions, like any file the user writes
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
