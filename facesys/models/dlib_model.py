"""The ``dlib-resnet`` model: dlib's face-recognition ResNet, read from the PyPI package
``face-recognition-models`` and converted once to a cached safetensors file.

The alignment template was fitted by ``benchmarks/fit_alignment_template.py`` (see
docs/alignment.md): MTCNN landmarks placed where dlib's own 5-point alignment puts them in its
150x150 chips (``get_face_chip_details(shape, 150, 0.25)``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from facesys.errors import ModelError
from facesys.hashing import file_sha256
from facesys.models._registry import ModelSpec, register_model

if TYPE_CHECKING:
    from torch import nn

DLIB_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"

# MTCNN landmarks (left eye, right eye, nose, mouth left, mouth right) in dlib's 150x150 chip,
# fitted on LFW people outside pairs.txt; see benchmarks/results/alignment_template.json.
DLIB_TEMPLATE = (
    (47.896, 46.106),
    (102.319, 46.036),
    (74.755, 77.818),
    (50.798, 105.634),
    (98.904, 105.625),
)
# Default verification threshold: Euclidean distance between unit embeddings, chosen for the
# best accuracy on LFW's pairsDevTrain (benchmarks/calibrate_default_threshold.py; 98.9% there,
# 98.6% on pairsDevTest).
DLIB_THRESHOLD = 0.417
# Impostor distances on the same data (5.9 million pairs of different people among pairsDevTrain's
# images): (false-accept rate per comparison, threshold reaching it). Used by open-set identification.
DLIB_FAR_TABLE = ((1e-1, 0.4933), (1e-2, 0.4296), (1e-3, 0.382), (1e-4, 0.3396), (1e-5, 0.3063))


def dlib_model_files() -> tuple[Path, Path]:
    """Paths of dlib's recognition network and 5-point shape predictor in ``face-recognition-models``.

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "dlib-resnet: the package 'face-recognition-models' is not installed "
            "(pip install face-recognition-models), or give the weights file " + DLIB_MODEL_FILE,
            parameter="weights",
        )
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return models / DLIB_MODEL_FILE, models / DLIB_SHAPE_PREDICTOR_FILE


def _build() -> nn.Module:
    from facesys.models.dlib_resnet import DlibResNet

    return DlibResNet()


def _load_weights(backbone: nn.Module, weights: str | None) -> str:
    """Fill ``backbone`` from dlib's .dat file (``weights`` or the packaged one); returns its sha256.

    The conversion is cached as ``<cache>/dlib-resnet-<sha256[:16]>.safetensors``.
    """
    from facesys.models.converted import load_converted
    from facesys.models.dlib_format import read_dlib_network
    from facesys.models.dlib_resnet import dlib_architecture

    source = Path(weights) if weights else dlib_model_files()[0]
    if not source.is_file():
        raise ModelError(f"{source}: dlib model file not found")
    sha = file_sha256(source)

    def convert() -> None:
        backbone.load_dlib_layers(read_dlib_network(source, dlib_architecture()))

    load_converted(backbone, "dlib-resnet", sha, convert)
    return sha


def _weights_location() -> str:
    try:
        return str(dlib_model_files()[0])
    except ModelError as exc:
        return f"missing: {exc}"


SPEC = register_model(
    ModelSpec(
        name="dlib-resnet",
        description="dlib's face-recognition ResNet (128-D, 99.38% LFW as published; offline, CC0)",
        architecture="dlib-resnet",
        input_size=150,
        template=DLIB_TEMPLATE,
        embedding_dim=128,
        threshold=DLIB_THRESHOLD,
        far_table=DLIB_FAR_TABLE,
        build=_build,
        load_weights=_load_weights,
        weights_location=_weights_location,
        licence="CC0",
    )
)
