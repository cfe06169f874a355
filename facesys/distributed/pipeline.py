"""Pipeline actors: each holds one Embedder (its model built once from the weights the driver put
in the object store) and runs batches of images through it, exchanging plain values only (paths,
arrays, bytes, numbers), never facesys objects: :func:`source_to_wire` / :func:`source_from_wire`
for the images in, :func:`faces_to_wire` / :func:`faces_from_wire` for the answers out.

A photo file travels as its path (the actor reads it: the photos must be on storage every node
sees at the same path; a relative path is taken from the driver's working folder); a video frame,
an array or anything else the driver holds travels decoded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facesys.errors import ImageError
from facesys.vision.detect import Detection
from facesys.vision.embed import Face, ImageFaces, ImageSource
from facesys.vision.images import ImageBytes, load_image
from facesys.vision.media import LazyImage

WireSource = tuple[str, Any]  # ("path", str) | ("bytes", (name, data, max_pixels)) | ("array", (H, W, 3) uint8) | ("error", str)


class PipelineActor:
    """A Ray actor: the driver's Embedder rebuilt from ``shipped`` and ``weights`` on ``device``,
    reading relative paths from ``folder`` (the driver's working folder) where this node has it."""

    def __init__(self, shipped, weights: bytes, device: str, folder: str):
        from facesys import threads
        from facesys.distributed.shipping import unpack

        threads.configure(1)  # one CPU per actor: Ray gave it one
        if os.path.isdir(folder):
            os.chdir(folder)
        self.embedder = unpack(shipped, weights, device)

    def face_batches(self, chunk: list[tuple[int, WireSource]], options: tuple) -> list[tuple[int, dict]]:
        """(position, image) items through ``Embedder.face_batches(items, *options)``: (position,
        :func:`faces_to_wire`) each, in order."""
        items = ((position, source_from_wire(source)) for position, source in chunk)
        batches = self.embedder.face_batches(items, *options)
        return [(position, faces_to_wire(result)) for batch in batches for position, result in batch]

    def embed_crops(self, crops: list[tuple[bytes, list[float], list[list[float]]]]) -> np.ndarray:
        """``Embedder.embed_crops``: (N, D) float32 unit embeddings of stored faces."""
        return self.embedder.embed_crops(crops)


def source_to_wire(source: ImageSource) -> WireSource:
    """What crosses Ray for one image: a file's path, or the image decoded here (an image that
    cannot be decoded travels as its error, raised or collected where it is read)."""
    if isinstance(source, (str, os.PathLike)):
        return "path", str(source)
    if isinstance(source, LazyImage) and source.path is not None:
        return "path", str(source.path)
    if isinstance(source, ImageBytes):
        return "bytes", (source.name, source.data, source.max_pixels)
    try:
        return "array", source() if callable(source) else load_image(source)
    except ImageError as exc:
        return "error", str(exc)


def source_from_wire(source: WireSource) -> ImageSource:
    """The image source :func:`source_to_wire` sent."""
    kind, value = source
    if kind == "path":
        return Path(value)
    if kind == "bytes":
        return ImageBytes(*value)
    if kind == "array":
        return value
    error = ImageError(value)

    def failed() -> np.ndarray:
        raise error

    return failed


def faces_to_wire(result: ImageFaces) -> dict:
    """An ImageFaces as plain values, without its pixels; :func:`faces_from_wire` reads it back."""
    faces, found = result.faces, result.detections
    return {
        "error": result.error,
        "faces": [(f.box, f.landmarks, float(f.score), f.embedding, f.chip, f.sharpness, f.crop) for f in faces],
        "detections": [(d.box, float(d.score), d.landmarks) for d in found],
    }


def faces_from_wire(item: dict, source: str) -> ImageFaces:
    """The ImageFaces :func:`faces_to_wire` sent, named ``source`` (the driver's name for it)."""
    faces = [Face(*fields) for fields in item["faces"]]  # box, landmarks, score, embedding, chip, sharpness, crop
    found = [Detection(box, score, landmarks) for box, score, landmarks in item["detections"]]
    return ImageFaces(source, faces, found, None, item["error"])
