"""The face crop a gallery stores: model-independent, enough for any model to re-align the face
(facesys/vision/embed.py ``chip_from_crop``)."""

from __future__ import annotations

import numpy as np

from facesys.config import CROP_FACE_PX, CROP_MARGIN, CROP_QUALITY
from facesys.errors import FacesysError

# A stored crop: JPEG bytes and its origin (x0, y0, scale) in the source photo.
Crop = tuple[bytes, tuple[float, float, float]]


def face_crop(image: np.ndarray, box: np.ndarray) -> Crop:
    """A model-independent JPEG crop around ``box`` and its origin (x0, y0, scale)."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    size = max(x2 - x1, y2 - y1)
    x0, y0 = max(0, int(x1 - CROP_MARGIN * size)), max(0, int(y1 - CROP_MARGIN * size))
    xe, ye = min(image.shape[1], int(x2 + CROP_MARGIN * size) + 1), min(image.shape[0], int(y2 + CROP_MARGIN * size) + 1)
    crop = image[y0:ye, x0:xe]
    scale = min(1.0, CROP_FACE_PX / max(size, 1.0))
    if scale < 1.0:
        crop = cv2.resize(
            crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))), interpolation=cv2.INTER_AREA
        )
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, CROP_QUALITY])
    if not ok:
        raise FacesysError("could not encode the face crop")
    return encoded.tobytes(), (float(x0), float(y0), scale)
