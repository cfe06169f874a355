"""Embedder: the one face pipeline. Images -> faces with box, landmarks, detection score and a
unit embedding.

The flow is image -> MTCNN detections -> face selection (all, largest, centre) -> chips aligned to
the model's template -> batched network -> L2-normalised float32 vectors. Every entry point
(embed, enroll, verify, identify, evaluation, training data) goes through ``Embedder.faces`` /
``Embedder.face_batches``; turning a stored face crop back into a chip lives here too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from facesys import threads
from facesys.config import BATCH_BYTES, CHIP_BATCH, CPU_CHIP_BATCH, DEFAULT_MODEL, ERROR_POLICIES, PHOTO_BATCH
from facesys.errors import FacesysError, ImageError
from facesys.models import ModelInfo
from facesys.vision.align import align_faces
from facesys.vision.crop import Crop, face_crop
from facesys.vision.detect import Detection, Detector, create_detector, pick_faces
from facesys.vision.images import ImageInput, describe, load_image
from facesys.vision.quality import sharpness

Tag = TypeVar("Tag")
# What the pipeline accepts as one image: a path, array or PIL image, or a zero-argument callable
# that returns an (H, W, 3) uint8 array (loaded only when its batch is processed; may raise).
ImageSource = ImageInput | Callable[[], np.ndarray]


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` (4,) x1, y1, x2, y2 pixels; ``landmarks`` (5, 2) x, y pixels;
    ``score`` the detector's score (its own scale: facesys/vision/quality.py); ``embedding`` (D,) float32 with unit L2 norm (None
    when not embedded); ``chip`` (S, S, 3) uint8 aligned chip when asked for; ``sharpness`` of the
    chip (variance of its Laplacian, facesys/vision/quality.py); ``crop`` the JPEG crop a gallery
    stores and its origin (facesys/vision/crop.py) when asked for.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    embedding: np.ndarray | None
    chip: np.ndarray | None = field(default=None, repr=False, compare=False)
    sharpness: float | None = None
    crop: Crop | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready: box and landmarks rounded to 0.1 pixel, embedding as a list of floats."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(self.score, 4),
            "embedding": None if self.embedding is None else [float(v) for v in self.embedding],
        }


@dataclass(frozen=True)
class ImageFaces:
    """One image through the pipeline: ``source`` names it; ``faces`` are the selected faces
    (largest first); ``detections`` every face found; ``image`` the decoded (H, W, 3) uint8 RGB
    pixels; ``error`` says why the image could not be used (then faces and detections are empty)."""

    source: str
    faces: list[Face]
    detections: list[Detection]
    image: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None

    @property
    def found(self) -> int:
        """How many faces the image has."""
        return len(self.detections)


class Embedder:
    """Detect, align and embed faces with one registered model (or checkpoint).

    ``model``: a name from ``facesys.models.list_models()``, a checkpoint path or an EmbeddingModel
    already built (``create_model``'s); ``weights``: an
    optional local weights file; ``flip``: add the embedding of the mirrored chip (test-time
    augmentation) before re-normalising; ``batch_size``: chips per network forward pass (default:
    CHIP_BATCH on a GPU, CPU_CHIP_BATCH on the CPU); ``precision``: fp32, bf16, fp16 or auto (see
    facesys/devices.py); ``detector``: a detector or its name in config.DETECTORS (None: the default;
    facesys/vision/detect.py). The network runs in channels-last memory format (faster on CPU and GPU).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "cpu",
        weights: str | None = None,
        flip: bool = False,
        batch_size: int | None = None,
        detector: Detector | str | None = None,
        precision: str = "auto",
    ):
        from facesys.devices import check_device, resolve_precision
        from facesys.models import create_model

        self.device = check_device(device)
        self.precision = resolve_precision(precision, self.device)
        built = not isinstance(model, str)  # an EmbeddingModel already built (a Ray actor's, facesys/distributed/)
        self.source = model.spec.name if built else model  # the name or checkpoint path it was created from
        self.model = model.to(device).eval() if built else create_model(model, weights=weights, device=device)
        import torch

        self.model.to(memory_format=torch.channels_last)
        self.spec = self.model.spec
        self.flip = flip
        self.batch_size = batch_size or (CHIP_BATCH if self.device.startswith("cuda") else CPU_CHIP_BATCH)
        self.detector = create_detector(detector, device) if detector is None or isinstance(detector, str) else detector
        self._template = np.asarray(self.spec.template, np.float64)

    @property
    def model_id(self) -> str:
        """``name@sha256-prefix`` of the weights, e.g. ``dlib-resnet@1a2b...``."""
        return self.model.model_id

    @property
    def model_info(self) -> ModelInfo:
        """The ModelInfo a gallery records for this embedder's embeddings."""
        return ModelInfo(self.model_id, self.source, self.model.weights_sha256, self.spec.embedding_dim)

    def embed_crops(self, crops: list[tuple[bytes, list[float], list[list[float]]]]) -> np.ndarray:
        """(N, D) unit embeddings of stored faces: (JPEG crop, crop origin, landmarks) each."""
        size = self.spec.input_size
        chips = [self.chip_from_crop(*crop) for crop in crops]
        return self.embed_chips(np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8))

    def chips(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """(N, S, S, 3) uint8 chips aligned to this model's template."""
        return align_faces(image, [d.landmarks for d in detections], self._template, self.spec.input_size)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned chips -> (N, D) float32 unit embeddings."""
        import torch

        threads.adapt()
        out = np.zeros((len(chips), self.spec.embedding_dim), np.float32)
        low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        device_type = torch.device(self.device).type
        with torch.inference_mode(), torch.autocast(device_type, dtype=low, enabled=low is not None):
            for start in range(0, len(chips), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(chips[start : start + self.batch_size]))
                x = batch.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)  # uint8 travels, 4x less
                x = x.contiguous(memory_format=torch.channels_last)
                vectors = self.model(x)
                if self.flip:
                    vectors = vectors + self.model(x.flip(3))
                vectors = torch.nn.functional.normalize(vectors.float(), dim=1)  # unit length in fp32
                out[start : start + len(batch)] = vectors.cpu().numpy()
        return out

    def chip_from_crop(self, jpeg: bytes, origin: list[float], landmarks: list[list[float]]) -> np.ndarray:
        """The (S, S, 3) uint8 chip of a stored face: its JPEG crop, the crop's origin (x0, y0, scale)
        in the source photo and the face's (5, 2) landmarks in source pixels."""
        import cv2

        pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise ImageError("stored face crop is not a decodable JPEG")
        x0, y0, scale = origin
        points = (np.asarray(landmarks, np.float64) - [x0, y0]) * scale
        return self.chips(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB), [Detection(np.zeros(4), 1.0, points)])[0]

    def faces(
        self,
        images: Iterable[ImageSource],
        select: str = "all",
        errors: str = "raise",
        keep_chips: bool = False,
        embed: bool = True,
        batch_size: int = PHOTO_BATCH,
    ) -> list[ImageFaces]:
        """Each image through the pipeline, in order (see :meth:`face_batches` for the options)."""
        return [
            result
            for batch in self.face_batches(((None, i) for i in images), select, errors, keep_chips, embed, batch_size)
            for _, result in batch
        ]

    def face_batches(
        self,
        items: Iterable[tuple[Tag, ImageSource]],
        select: str = "all",
        errors: str = "raise",
        keep_chips: bool = False,
        embed: bool = True,
        batch_size: int = PHOTO_BATCH,
        crops: bool = False,
    ) -> Iterator[list[tuple[Tag, ImageFaces]]]:
        """(tag, image) items -> batches of (tag, ImageFaces), in input order.

        Images are decoded lazily, ``batch_size`` at a time (fewer when their pixels pass
        ``BATCH_BYTES``): one batched detection and one network pass per batch. ``select``:
        ``all`` faces, the ``largest``, or the one nearest the ``center``; ``errors``: ``raise``
        the ImageError of an unusable image, or ``collect`` it in ``ImageFaces.error`` and go on;
        ``keep_chips`` keeps each face's aligned chip; ``embed=False`` stops at the chips; ``crops``
        makes each face's stored crop (``Face.crop``).

        On the CPU with several photo workers (facesys/threads.py) a batch of several photos is
        split between them, each part on one thread, and the next batch starts while this one is
        handed out.
        """
        check_options(select, errors)
        options = (select, errors, keep_chips, embed, crops)
        workers = threads.photo_workers() if self.device == "cpu" else 1
        if workers == 1:
            for pending in self._decoded(items, errors, batch_size):
                yield self._run(pending, *options)
            return
        pool = threads.photo_pool(workers)
        started: deque[list[Future]] = deque()  # batches under way, oldest first: one future per part
        for pending in self._decoded(items, errors, batch_size):
            if len(pending) == 1 and not started:  # one photo: this thread, with all the threads it may use
                yield self._run(pending, *options)
                continue
            part = -(-len(pending) // workers)
            started.append([pool.submit(self._run, pending[i : i + part], *options) for i in range(0, len(pending), part)])
            if len(started) > 1:
                yield [item for future in started.popleft() for item in future.result()]
        while started:
            yield [item for future in started.popleft() for item in future.result()]

    def _decoded(self, items: Iterable[tuple[Tag, ImageSource]], errors: str, batch_size: int) -> Iterator[list[tuple]]:
        """Batches of (tag, name, decoded image or None, error or None): ``batch_size`` images, fewer
        when their pixels pass BATCH_BYTES."""
        pending: list[tuple[Tag, str, np.ndarray | None, str | None]] = []
        size = 0
        for tag, source in items:
            name = source_name(source)
            image, error = None, None
            try:
                image = source() if callable(source) else load_image(source)
            except ImageError as exc:
                if errors == "raise":
                    raise
                error = str(exc)
            pending.append((tag, name, image, error))
            size += 0 if image is None else image.nbytes
            if len(pending) >= batch_size or size > BATCH_BYTES:
                yield pending
                pending, size = [], 0
        if pending:
            yield pending

    def _run(self, pending, select: str, errors: str, keep_chips: bool, embed: bool, crops: bool) -> list[tuple]:
        """One batch: detect, select, align, embed (detection and the network each adapt the thread count)."""
        decoded = [i for i, (_, _, image, _) in enumerate(pending) if image is not None]
        found = dict(
            zip(decoded, self._detect([pending[i][2] for i in decoded], [pending[i][1] for i in decoded], errors), strict=True)
        )
        chosen, chips = {}, []
        for i in decoded:
            detections = found[i]
            if isinstance(detections, str):
                continue
            chosen[i] = pick_faces(detections, pending[i][2].shape, select)
            chips.append(self.chips(pending[i][2], chosen[i]))
        size = self.spec.input_size
        chips = np.concatenate(chips) if chips else np.zeros((0, size, size, 3), np.uint8)
        vectors = self.embed_chips(chips) if embed and len(chips) else None
        out, offset = [], 0
        for i, (tag, name, image, error) in enumerate(pending):
            detections = found.get(i, [])
            if isinstance(detections, str):
                out.append((tag, ImageFaces(name, [], [], image, detections)))
                continue
            faces = []
            for d in chosen.get(i, []):
                vector = None if vectors is None else vectors[offset]
                chip = chips[offset]
                crop = face_crop(image, d.box) if crops else None
                faces.append(Face(d.box, d.landmarks, d.score, vector, chip if keep_chips else None, sharpness(chip), crop))
                offset += 1
            out.append((tag, ImageFaces(name, faces, detections if error is None else [], image, error)))
        return out

    def _detect(self, images: list[np.ndarray], names: list[str], errors: str) -> list[list[Detection] | str]:
        """Detections of each image; when the batch fails, each image alone, so one bad image
        costs only its own answer (its entry is then the error message)."""
        try:
            return self.detector.detect(images)
        except Exception:  # opencv or torch refusing one odd image must not sink the batch
            pass
        results: list[list[Detection] | str] = []
        for image, name in zip(images, names, strict=True):
            try:
                results.append(self.detector.detect([image])[0])
            except Exception as exc:
                message = f"{name}: face detection failed on this image ({type(exc).__name__})"
                if errors == "raise":
                    raise ImageError(message) from None
                results.append(message)
        return results

    def embed(self, images: list[ImageInput] | ImageInput) -> list[list[Face]]:
        """Faces of each image (paths, arrays or PIL images), largest first; [] where none.

        A single image (not a list) gives a one-element list. Raises ImageError for a bad file.
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        return [result.faces for result in self.faces(images)]


def check_options(select: str, errors: str) -> None:
    """FacesysError for an unknown face ``select`` or ``errors`` policy (before any image is decoded)."""
    pick_faces([], (), select)
    if errors not in ERROR_POLICIES:
        raise FacesysError(f"errors={errors!r}: choose from {', '.join(ERROR_POLICIES)}")


def source_name(source: ImageSource) -> str:
    """The name of an image source in results and messages (``ImageFaces.source``)."""
    return str(source) if callable(source) else describe(source)
