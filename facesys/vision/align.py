"""Alignment: a least-squares similarity transform of 5 landmarks onto a model's template -> chips.

A similarity (rotation, uniform scale, translation) keeps the face's proportions; the template
says where each landmark must land in the ``size`` x ``size`` chip. When the face must shrink by
more than 2x, the image is first halved with a Gaussian pyramid so the chip does not alias.
Pixels outside the image are black, as in dlib's ``extract_image_chip``.
"""

from __future__ import annotations

import cv2
import numpy as np

from facesys.errors import NoFaceError


def similarity_matrix(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(2, 3) float64 matrix M with ``template ~= M @ [landmarks, 1]`` in the least-squares sense.

    ``landmarks`` and ``template``: (5, 2) x, y pixels. NoFaceError when the landmarks coincide.
    """
    src = np.asarray(landmarks, np.float64).reshape(-1, 1, 2)
    dst = np.asarray(template, np.float64).reshape(-1, 1, 2)
    # With a threshold no point can fail, RANSAC keeps every point and the final Levenberg-Marquardt
    # refinement solves the full least-squares problem (linear in the 4 unknowns, so it converges).
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e9, refineIters=50)
    if matrix is None:
        raise NoFaceError("landmarks: all points coincide, so the face cannot be aligned")
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 chip of the face with ``landmarks`` (5, 2) in ``image`` (H, W, 3) uint8."""
    matrix = similarity_matrix(landmarks, template)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    while scale < 0.5 and min(image.shape[:2]) >= 4:
        image = cv2.pyrDown(image)
        # pyrDown's output pixel x samples input pixel 2x, so old coordinates are 2 * new ones.
        matrix = matrix.copy()
        matrix[:, :2] *= 2.0
        scale *= 2.0
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align_faces(image: np.ndarray, landmarks: list[np.ndarray], template: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 chips, one per (5, 2) landmark set of ``landmarks``."""
    chips = [align_face(image, points, template, size) for points in landmarks]
    return np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8)
