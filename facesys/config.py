"""Defaults in one place: the default model, where the gallery lives, choices offered by the CLI,
limits and batch sizes. Library code and the CLI both read them from here (the CLI builds its
``click.Choice`` lists from these tuples), so a default is never written twice.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "sface"  # used when neither the caller nor the gallery names a model
DETECTORS = ("mtcnn", "yunet")  # face detectors (facesys/vision/detect.py: create_detector; --detector)
DEFAULT_DETECTOR = "yunet"
DEFAULT_GALLERY = "gallery"  # folder, relative to the current directory
GALLERY_ENV = "FACESYS_GALLERY"  # environment variable naming the gallery
MODELS_ENV = "FACESYS_MODELS"  # environment variable naming the folder of the user's own models
ONNX_KINDS = ("arcface", "sface", "generic")  # what `models prepare --kind` accepts (facesys/models/onnx_model.py)

DEVICE_FORMS = ("cpu", "cuda", "cuda:N")  # what --device accepts (N: a CUDA device number)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FACE_SELECTIONS = ("all", "largest", "center")  # which faces of a photo Embedder.faces returns
ERROR_POLICIES = ("raise", "collect")  # what Embedder.faces does with an unreadable image

# Open-set identification: the false-identification rate the computed threshold aims at.
DEFAULT_TARGET_FPIR = 0.01

# Identify's answer: candidates listed per face, and each candidate's nearest enrolled photos
# listed (all of them with --explain / explain=true in JSON).
TOP_K = 3
CANDIDATE_PHOTOS = 3

# How a person with several enrolled photos is scored against a probe (facesys/decide/scoring.py).
PERSON_SCORES = ("template", "nearest", "nearest-2")
DEFAULT_PERSON_SCORE = "template"

# Batching: photos (or video frames) detected and embedded together, unless their decoded pixels
# pass BATCH_BYTES (a folder of huge photos must not take gigabytes); chips per network pass.
PHOTO_BATCH = 16
BATCH_BYTES = 300_000_000
CHIP_BATCH = 64  # on a GPU
# On a CPU a smaller pass keeps activations in cache: SFace costs 7.9 ms a face in passes of 4, 19.9 in
# passes of 64 (2 cores, channels-last); dlib-resnet 3.1 vs 3.2.
CPU_CHIP_BATCH = 8
REEMBED_BATCH = 1024  # stored crops re-embedded together by a reindex; library faces committed together

# Stored crops: the face box plus CROP_MARGIN of its size on every side, the face at most
# CROP_FACE_PX pixels across, JPEG quality CROP_QUALITY. Enough for any model to re-align.
CROP_MARGIN = 0.6
CROP_FACE_PX = 224
CROP_QUALITY = 95

CONFUSION_NEIGHBOURS = 32  # enrolled faces compared with a new photo for the confusion warning
FRAME_STEP = 10  # every Nth frame of a video (identify) or an animated image (scan) is looked at by default
LOG_EVENTS = 100  # audit events listed by default (facesys gallery log, GET /v1/log)

# The service (facesys serve, facesys/service/settings.py): where it listens and its limits. A
# micro-batch holds PHOTO_BATCH images by default.
SERVICE_HOST, SERVICE_PORT = "127.0.0.1", 8000
MAX_UPLOAD_MB = 20  # largest request body
MAX_FILES = 32  # uploads per request
MAX_UPLOAD_PIXELS = 40_000_000  # largest declared image size decoded
MAX_REQUEST_PIXELS = 100_000_000  # declared pixels of all of a request's photos together
REQUEST_TIMEOUT_S = 60.0  # longest a request waits for its answer
BATCH_WAIT_MS = 10.0  # longest a micro-batch waits to fill
MAX_QUEUE = 256  # requests waiting before new ones get 503


def default_gallery() -> str:
    """``$FACESYS_GALLERY`` (a folder or a ``postgresql://`` URL), else ``gallery`` (a folder in the
    current directory)."""
    return os.environ.get(GALLERY_ENV, DEFAULT_GALLERY)


def cache_dir() -> Path:
    """Where derived files are kept (converted weights, the search index of a database gallery):
    ``$FACESYS_CACHE`` or the user's cache folder."""
    if "FACESYS_CACHE" in os.environ:
        return Path(os.environ["FACESYS_CACHE"])
    from platformdirs import user_cache_path

    return user_cache_path("facesys")


def models_dir() -> Path:
    """Where the user's own prepared models live (facesys/models/user_models.py): ``$FACESYS_MODELS``
    or ``models`` in the user's data folder (next to the cache, but not in it: a cache may be emptied
    at any time, and a prepared model may be the only copy of the user's graph)."""
    if MODELS_ENV in os.environ:
        return Path(os.environ[MODELS_ENV])
    from platformdirs import user_data_path

    return user_data_path("facesys") / "models"
