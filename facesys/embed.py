"""Embedder: images -> faces with box, landmarks, detection score and a unit embedding.

The flow is image -> MTCNN detections -> chips aligned to the model's template -> batched
network -> L2-normalised float32 vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesys.align import align_faces
from facesys.detect import Detection, FaceDetector
from facesys.images import ImageInput, load_image


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` (4,) x1, y1, x2, y2 pixels; ``landmarks`` (5, 2) x, y pixels;
    ``score`` MTCNN's detection probability; ``embedding`` (D,) float32 with unit L2 norm.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    embedding: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready: box and landmarks rounded to 0.1 pixel, embedding as a list of floats."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(self.score, 4),
            "embedding": [float(v) for v in self.embedding],
        }


class Embedder:
    """Detect, align and embed faces with one registered model (or checkpoint).

    ``model``: a name from ``facesys.models.list_models()`` or a checkpoint path; ``weights``: an
    optional local weights file; ``flip``: add the embedding of the mirrored chip (test-time
    augmentation) before re-normalising; ``batch_size``: chips per network forward pass;
    ``precision``: fp32, bf16, fp16 or auto (see facesys/devices.py). On a GPU the network runs in
    channels-last memory format.
    """

    def __init__(
        self,
        model: str = "dlib-resnet",
        device: str = "cpu",
        weights: str | None = None,
        flip: bool = False,
        batch_size: int = 64,
        detector: FaceDetector | None = None,
        precision: str = "auto",
    ):
        from facesys.devices import check_device, resolve_precision
        from facesys.models import create_model

        self.device = check_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.source = model  # the name or checkpoint path it was created from
        self.model = create_model(model, weights=weights, device=device)
        self.channels_last = self.device.startswith("cuda")
        if self.channels_last:
            import torch

            self.model.to(memory_format=torch.channels_last)
        self.spec = self.model.spec
        self.flip = flip
        self.batch_size = batch_size
        self.detector = detector or FaceDetector(device=device)
        self._template = np.asarray(self.spec.template, np.float64)

    @property
    def model_id(self) -> str:
        """``name@sha256-prefix`` of the weights, e.g. ``dlib-resnet@1a2b...``."""
        return self.model.model_id

    def chips(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """(N, S, S, 3) uint8 chips aligned to this model's template."""
        return align_faces(image, [d.landmarks for d in detections], self._template, self.spec.input_size)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned chips -> (N, D) float32 unit embeddings."""
        import torch

        out = np.zeros((len(chips), self.spec.embedding_dim), np.float32)
        low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        device_type = torch.device(self.device).type
        with torch.inference_mode(), torch.autocast(device_type, dtype=low, enabled=low is not None):
            for start in range(0, len(chips), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(chips[start : start + self.batch_size]))
                x = batch.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)  # uint8 travels, 4x less
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                vectors = self.model(x)
                if self.flip:
                    vectors = vectors + self.model(x.flip(3))
                vectors = torch.nn.functional.normalize(vectors.float(), dim=1)  # unit length in fp32
                out[start : start + len(batch)] = vectors.cpu().numpy()
        return out

    def embed(self, images: list[ImageInput] | ImageInput) -> list[list[Face]]:
        """Faces of each image (paths, arrays or PIL images), largest first; [] where none.

        A single image (not a list) gives a one-element list. Raises ImageError for a bad file.
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        arrays = [load_image(image) for image in images]
        detections = self.detector.detect(arrays)
        chips = [self.chips(image, faces) for image, faces in zip(arrays, detections, strict=True)]
        vectors = self.embed_chips(np.concatenate(chips)) if chips else np.zeros((0, self.spec.embedding_dim))
        results, offset = [], 0
        for faces in detections:
            results.append([Face(d.box, d.landmarks, d.score, vectors[offset + i]) for i, d in enumerate(faces)])
            offset += len(faces)
        return results
