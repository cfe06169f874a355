"""Score-level fusion of several networks as one model (``dlib+sface``).

Each member's cosine ``c_m`` is z-normalised with label-free statistics fitted on development
data (mean and spread of the cosines of every pair of LFW pairsDevTrain images;
``benchmarks/fit_fusion.py``) and the fused score is ``sum_m w_m (c_m - mean_m) / std_m``. As a
vector: the concatenation of each member's unit vector times ``sqrt(w_m / std_m)``, L2-normalised.
Its length before normalising is the same for every face, so the inner product of two fused
vectors is an increasing affine function of the fused score: the Euclidean distance between unit
vectors orders pairs exactly as the fused score does, and galleries, FAISS indexes, thresholds and
clustering work unchanged.

All members read one chip: the face aligned once to a canvas (``CANVAS_SIZE`` square, landmarks
where ``CANVAS_TEMPLATE`` puts them, wide enough for every member's field of view); each member's
chip is cut from it by the fixed similarity between the canvas template and the member's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facesys.errors import ModelError
from facesys.models._registry import ModelSpec, get_model_spec

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Member:
    """A fused network: its registered ``name``, fusion ``weight``, and the ``mean`` and ``std`` of its
    cosines over all pairs of the development images."""

    name: str
    weight: float
    mean: float
    std: float

    @property
    def scale(self) -> float:
        """This member's factor in the fused vector: sqrt(weight / std)."""
        return (self.weight / self.std) ** 0.5


def member_transform(member_template, member_size: int, canvas_template, canvas_size: int) -> np.ndarray:
    """(2, 3) float32 ``theta`` for ``torch.nn.functional.affine_grid`` (align_corners=False) that
    samples a member's ``member_size`` chip from the canvas: member pixel -> canvas pixel by the
    least-squares similarity between the templates, both sides in normalised [-1, 1] coordinates."""
    from facesys.vision.align import similarity_matrix

    to_canvas = np.vstack([similarity_matrix(np.asarray(member_template), np.asarray(canvas_template)), [0, 0, 1]])

    def normalise(size: int) -> np.ndarray:  # pixel coordinates (centres at integers) -> [-1, 1]
        return np.array([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1]])

    theta = normalise(canvas_size) @ to_canvas @ np.linalg.inv(normalise(member_size))
    return theta[:2].astype(np.float32)


def fusion_spec(
    name: str, members: tuple[Member, ...], canvas_size: int, canvas_template, description: str, threshold: float, far_table=()
) -> ModelSpec:
    """The ModelSpec of the fusion of ``members`` read from a ``canvas_size`` chip aligned to ``canvas_template``.
    The members are registered models, looked up once here."""
    member_specs = [get_model_spec(member.name) for member in members]

    def build() -> nn.Module:
        from facesys.models.fused_net import FusedNet

        thetas = np.stack([member_transform(s.template, s.input_size, canvas_template, canvas_size) for s in member_specs])
        nets = [s.build() for s in member_specs]
        return FusedNet(nets, [s.input_size for s in member_specs], thetas, [m.scale for m in members])

    def load_weights(backbone: nn.Module, weights: str | None) -> str:
        """Each member's own weights; the fused model's sha256 is that of the members' sha256s and its
        fusion parameters, so a change of either makes another model id."""
        if weights:
            message = f"{name}: a fused model takes each member's own weights; --weights does not apply"
            raise ModelError(message, parameter="weights")
        digest = hashlib.sha256()
        for member, spec, net in zip(members, member_specs, backbone.nets, strict=True):
            digest.update(f"{member}:{spec.load_weights(net, None)};".encode())
        return digest.hexdigest()

    def weights_location() -> str:
        return "; ".join(f"{spec.name}: {spec.weights_location()}" for spec in member_specs)

    return ModelSpec(
        name=name,
        description=description,
        architecture=name,
        input_size=canvas_size,
        template=tuple(tuple(float(v) for v in point) for point in canvas_template),
        embedding_dim=sum(spec.embedding_dim for spec in member_specs),
        threshold=threshold,
        far_table=far_table,
        build=build,
        load_weights=load_weights,
        weights_location=weights_location,
        licence=" + ".join(spec.licence or "not declared" for spec in member_specs),
    )


def member_vectors(fused: np.ndarray, dims: list[int]) -> list[np.ndarray]:
    """The members' (N, D_m) unit vectors inside (N, sum D_m) fused vectors (each part renormalised)."""
    parts = np.split(np.asarray(fused, np.float64), np.cumsum(dims)[:-1], axis=1)
    return [part / np.linalg.norm(part, axis=1, keepdims=True) for part in parts]


def fit_statistics(vectors: np.ndarray) -> tuple[float, float]:
    """(mean, std) of the cosines of every pair of different rows of (N, D) unit ``vectors``."""
    cosines = vectors @ vectors.T
    upper = cosines[np.triu_indices(len(vectors), k=1)]
    return float(upper.mean()), float(upper.std())
