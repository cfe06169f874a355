"""The ``dlib+sface`` model: dlib's ResNet and SFace fused at score level (facesys/models/fusion.py).

Statistics and weights: ``benchmarks/fit_fusion.py`` (LFW pairsDevTrain, label-free);
threshold and false-accept table: ``benchmarks/calibrate_default_threshold.py --model dlib+sface``.
"""

from __future__ import annotations

from facesys.models._registry import register_model
from facesys.models.fusion import Member, fusion_spec
from facesys.models.sface import SFACE_TEMPLATE

# The canvas: SFace's template at twice the size, 16 px right, in a 256-px chip. It holds SFace's
# whole field of view (at 2x: SFace's chip is cut at half scale) and dlib's (at 1.32x: dlib's chip
# reaches further down the chin than SFace's).
CANVAS_SIZE = 256
CANVAS_TEMPLATE = tuple((2 * x + 16, 2 * y) for x, y in SFACE_TEMPLATE)
# Cosine statistics over every pair of the 3,441 pairsDevTrain images with a face (fusion_dlib+sface.json).
MEMBERS = (
    Member("dlib-resnet", weight=0.5, mean=0.83407, std=0.03501),
    Member("sface", weight=0.5, mean=0.10262, std=0.08752),
)

# Best accuracy on LFW pairsDevTrain (99.73% there, 99.20% on pairsDevTest) and the false-accept table
# (5.9 million impostor pairs): calibrate_default_threshold.py --model dlib+sface.
THRESHOLD = 0.7035
FAR_TABLE = ((1e-1, 0.8043), (1e-2, 0.749), (1e-3, 0.7066), (1e-4, 0.67), (1e-5, 0.6338))

SPEC = register_model(
    fusion_spec(
        "dlib+sface",
        MEMBERS,
        CANVAS_SIZE,
        CANVAS_TEMPLATE,
        description="dlib's ResNet and SFace, z-normalised cosines fused with equal weights (256-D)",
        threshold=THRESHOLD,
        far_table=FAR_TABLE,
    )
)
