"""MTCNN face detection run batch-wide on one device, over facenet-pytorch's P-, R- and O-Net weights.

MTCNN (Zhang, Zhang, Li and Qiao 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", IEEE Signal Processing Letters 23(10)) is a cascade of three small networks:

1. PNet, fully convolutional, slides a 12x12 window (stride 2) over an image pyramid whose first level
   maps ``min_face_size`` pixels to 12 and each next level is ``factor`` times smaller. Every window
   scoring at least ``thresholds[0]`` becomes a box in image pixels, moved by PNet's regression;
   non-maximum suppression (NMS) runs first within each pyramid level (IoU 0.5), then across levels
   (IoU 0.7).
2. RNet re-scores each box from a 24x24 crop of the image (the box made square and clipped to the
   image, resampled by area averaging); boxes above ``thresholds[1]`` go through NMS (IoU 0.7), are
   moved by RNet's regression and made square again.
3. ONet does the same from 48x48 crops and also places five landmarks; boxes above ``thresholds[2]``
   are moved by ONet's regression and go through a last NMS that divides the overlap by the smaller
   box's area instead of the union ("Min" NMS, threshold 0.7).

This driver follows facenet-pytorch's ``detect_face`` step for step (the same pyramid sizes, area
resampling, ``(x - 127.5) / 128`` normalisation, box arithmetic with its +1 widths, clipping and NMS
thresholds, float32 throughout), so boxes, scores and landmarks are those of
``facenet_pytorch.MTCNN.detect`` (on the CPU, to the bit: tests/vision/test_mtcnn.py). What differs is how
the work is laid out: every stage runs on the whole batch at once.
The candidates of all images and pyramid levels are one set of tensors with an image column; NMS is
one call of torchvision's operator (facesys/vision/nms.py) keyed by image (or by image and level), the "Min"
NMS a masked matrix in torch; the crops of all boxes are cut and resampled on the device in one gather from a summed-area table
(exactly what area interpolation of each crop computes, without a Python loop); RNet and ONet see
all crops in chunks of ``chunk_size``; the host sees only the last NMS's scores (below) and the result.

ONet's scores often saturate at exactly 1.0, so which of two overlapping boxes the last NMS keeps is
decided by facenet-pytorch's ``np.argsort``; the driver ranks those scores with the same call (a copy of
a few hundred floats to the host) to make the same choice.

Deliberate differences from facenet-pytorch, both in cases where it misbehaves: a box whose clipped
crop is empty (entirely outside the image) is dropped, where facenet-pytorch raises an IndexError;
the last "Min" NMS is strictly per image, where facenet-pytorch's coordinate offsets can let a box
with negative coordinates suppress a box of the previous image in the batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facesys import threads
from facesys.errors import ImageError
from facesys.vision.mtcnn_nets import pretrained_nets
from facesys.vision.nms import batched_nms, nms

Faces = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One image's faces: boxes (K, 4) x1, y1, x2, y2 pixels, scores (K,) in [0, 1], landmarks (K, 5, 2) x, y
pixels (left eye, right eye, nose, left and right mouth corner as seen in the image); all float32."""


class BatchedMTCNN:
    """MTCNN over facenet-pytorch's pretrained weights (they ship in its wheel; nothing is downloaded).

    ``min_face_size`` is the smallest face searched for, in pixels; ``thresholds`` are the P-, R- and
    O-Net score thresholds; ``factor`` is the ratio between successive pyramid levels; RNet and ONet
    see at most ``chunk_size`` crops per call (bounds device memory, not results; by default 512 on the
    CPU, fastest there, and 2048 on a GPU).
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        chunk_size: int | None = None,
    ):
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (net.to(self.device) for net in pretrained_nets())
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        self.chunk_size = chunk_size or (512 if self.device.type == "cpu" else 2048)

    @torch.inference_mode()
    def detect(self, images: np.ndarray | Tensor) -> list[Faces]:
        """Faces in each of ``images``, (N, H, W, 3) uint8 RGB, all the same size (one (H, W, 3) image is
        a batch of one).

        Returns one ``(boxes, scores, landmarks)`` per image (see ``Faces``), largest box first, as
        ``facenet_pytorch.MTCNN.detect`` orders them; empty arrays where there is no face.

        Runs on the thread count of facesys/threads.py (``adapt``), in whichever thread calls it: a
        caller outside the photo workers and the Embedder's pipeline gets the policy's count too, not
        torch's default of a thread per core (beside other programs those threads spin while waiting
        for each other with the automatic count: 5-10x slower, issue 25).
        """
        threads.adapt()
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.require(images, requirements=["C", "W"]))  # a copy only if read-only
        batch = torch.as_tensor(images, device=self.device)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.dtype != torch.uint8:
            raise ImageError(f"images must be uint8 pixels, not {batch.dtype}")
        count = len(batch)
        if not count:
            return []
        # (N, 3, H, W) 0..255 in channels-last memory, as facenet-pytorch has it (convolutions round differently
        # in the other layout).
        pixels = batch.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
        sums = _summed_area_table(batch)

        boxes, owner = self._propose(pixels)
        scores = torch.zeros(0, device=self.device)
        landmarks = torch.zeros(0, 5, 2, device=self.device)
        if len(boxes):
            boxes, owner, score, shift = self._score(self.rnet, sums, boxes, owner, 24, self.thresholds[1])
            pick = batched_nms(boxes, score, owner, 0.7)
            boxes, owner = _square(_shift(boxes[pick], shift[pick])), owner[pick]
        if len(boxes):
            boxes, owner, scores, shift, points = self._score(self.onet, sums, boxes, owner, 48, self.thresholds[2])
            landmarks = _place_landmarks(boxes, points)
            boxes = _shift(boxes, shift)
            pick = _min_nms(boxes, scores, owner, 0.7)
            boxes, owner, scores, landmarks = boxes[pick], owner[pick], scores[pick], landmarks[pick]
        return _split(count, boxes.cpu().numpy(), scores.cpu().numpy(), landmarks.cpu().numpy(), owner.cpu().numpy())

    def _scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales (detection pixels per image pixel), largest first, while the image stays >= 12 px."""
        scale = 12.0 / self.min_face_size
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.factor
            side *= self.factor
        return scales

    def _propose(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1: PNet over the pyramid of the whole batch -> square candidate boxes (K, 4) float32
        image pixels and the index of the image each belongs to (K,) int64."""
        count, _, height, width = pixels.shape
        scores, shifts, cell_boxes, cells = [], [], [], []
        for scale in self._scales(height, width):
            level = F.interpolate(pixels, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
            shift, prob = self.pnet(_normalise(level))  # (N, 4, h, w), (N, 2, h, w)
            scores.append(prob[:, 1].reshape(-1))  # flat in (image, y, x) order
            shifts.append(shift.permute(0, 2, 3, 1).reshape(-1, 4))
            h, w = prob.shape[2:]
            rows, cols = torch.arange(h, device=pixels.device), torch.arange(w, device=pixels.device)
            xy = torch.cartesian_prod(rows, cols).flip(1).float()  # (h*w, 2) x, y in row-major order
            # The 12x12 window of each output cell, in image pixels (stride 2), as whole pixels.
            cell_boxes.append(torch.cat([((2 * xy + 1) / scale).floor(), ((2 * xy + 12) / scale).floor()], 1))
            cells.append(h * w)
        if not scores:
            return torch.zeros(0, 4, device=pixels.device), torch.zeros(0, dtype=torch.long, device=pixels.device)

        # One nonzero over all levels; the flat index gives the level, the image and the cell.
        score = torch.cat(scores)
        hits = torch.nonzero(score >= self.thresholds[0]).squeeze(1)
        sizes = torch.tensor([count * c for c in cells], device=pixels.device)
        level_cells = torch.tensor(cells, device=pixels.device)
        first_hit = torch.cumsum(sizes, 0) - sizes
        first_cell = torch.cumsum(level_cells, 0) - level_cells
        level = torch.searchsorted(first_hit, hits, right=True) - 1
        local = hits - first_hit[level]
        owner, cell = local // level_cells[level], local % level_cells[level]
        boxes = torch.cat(cell_boxes)[first_cell[level] + cell]
        score, shift = score[hits], torch.cat(shifts)[hits]

        # NMS within each level of each image, then within each image across levels (in facenet-pytorch's
        # level-major order, which decides between equal scores).
        pick = _nms_whole_pixels(boxes, score, level * count + owner, len(cells) * count, 0.5)
        pick = pick[torch.argsort(level[pick], stable=True)]
        boxes, score, shift, owner = boxes[pick], score[pick], shift[pick], owner[pick]
        pick = _nms_whole_pixels(boxes, score, owner, count, 0.7)
        boxes, shift, owner = boxes[pick], shift[pick], owner[pick]
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # PNet's regression is in box widths without the +1
        return _square(boxes + shift * size), owner

    def _score(
        self, net: torch.nn.Module, sums: Tensor, boxes: Tensor, owner: Tensor, size: int, threshold: float
    ) -> tuple[Tensor, ...]:
        """Stages 2 and 3: run ``net`` on ``size`` x ``size`` crops of ``boxes``, in chunks; keep the boxes
        scoring above ``threshold``. Returns (boxes, owner, scores, regression (K, 4)[, landmarks (K, 10)])."""
        x0, y0, x1, y1 = _crop_windows(boxes, sums.shape[1] - 1, sums.shape[2] - 1)
        inside = (x1 > x0) & (y1 > y0)
        boxes, owner, x0, y0, x1, y1 = (t[inside] for t in (boxes, owner, x0, y0, x1, y1))
        outputs = []
        for start in range(0, len(boxes), self.chunk_size):
            part = slice(start, start + self.chunk_size)
            crops = _resample_crops(sums, owner[part], x0[part], y0[part], x1[part], y1[part], size)
            outputs.append(net(_normalise(crops)))
        if not outputs:  # no box had a crop: run a blank one for the outputs' shapes, keep none of it
            outputs.append(tuple(t[:0] for t in net(torch.zeros(1, 3, size, size, device=sums.device))))
        *rest, prob = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        score = prob[:, 1]
        keep = score > threshold
        return boxes[keep], owner[keep], score[keep], *(t[keep] for t in rest)


def _normalise(pixels: Tensor) -> Tensor:
    """0..255 pixels -> MTCNN's input range, about -1..1."""
    return (pixels - 127.5) * 0.0078125


def _square(boxes: Tensor) -> Tensor:
    """Boxes (K, 4) grown to squares of the longer side about the same centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def _shift(boxes: Tensor, shift: Tensor) -> Tensor:
    """Apply R/O-Net's box regression (K, 4), in units of the box's width and height counted inclusively (+1)."""
    size = (boxes[:, 2:] - boxes[:, :2] + 1).repeat(1, 2)
    return boxes + shift * size


def _place_landmarks(boxes: Tensor, points: Tensor) -> Tensor:
    """ONet's landmarks (K, 10: five x then five y, as fractions of the box) -> (K, 5, 2) x, y image pixels."""
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1
    x = w * points[:, :5] + boxes[:, 0:1] - 1
    y = h * points[:, 5:] + boxes[:, 1:2] - 1
    return torch.stack([x, y], 2)


def _crop_windows(boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The pixels each box covers, clipped to the image: columns x0..x1 and rows y0..y1 (end exclusive),
    int64. Box coordinates are truncated to whole pixels and read as 1-based, as in the original MTCNN."""
    x0, y0, x1, y1 = boxes.trunc().long().unbind(1)
    return x0.clamp(min=1) - 1, y0.clamp(min=1) - 1, x1.clamp(max=width), y1.clamp(max=height)


def _summed_area_table(images: Tensor) -> Tensor:
    """(N, H, W, C) uint8 -> (N, H + 1, W + 1, C) integer table: [n, y, x] is the sum of rows < y, columns < x."""
    height, width = images.shape[1:3]
    dtype = torch.int32 if 255 * height * width < 2**31 else torch.int64
    table = images.to(dtype).cumsum(1).cumsum(2)
    return F.pad(table, (0, 0, 1, 0, 1, 0))


def _resample_crops(sums: Tensor, owner: Tensor, x0: Tensor, y0: Tensor, x1: Tensor, y1: Tensor, size: int) -> Tensor:
    """Crops [y0:y1, x0:x1] of images ``owner`` resampled to (K, C, size, size) float32
    by area averaging.

    Output pixel i of a crop of n pixels averages input pixels floor(i n / size) .. ceil((i + 1) n / size) - 1,
    which is what ``F.interpolate(crop, mode="area")`` (adaptive average pooling) computes, to the bit:
    the integer sums are exact and the mean is divided by the rows, then the columns, as PyTorch does.
    """
    _, rows_in_table, cols_in_table, channels = sums.shape
    i = torch.arange(size, device=sums.device)

    def bins(start: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
        n = (end - start)[:, None]
        return start[:, None] + i * n // size, start[:, None] - (-(i + 1) * n) // size  # floor, ceil

    top, bottom = bins(y0, y1)
    left, right = bins(x0, x1)
    table = sums.view(-1, channels)  # one row per (image, y, x)
    first_row = owner[:, None] * rows_in_table

    def corner(rows: Tensor, cols: Tensor) -> Tensor:
        index = (first_row + rows)[:, :, None] * cols_in_table + cols[:, None, :]  # (K, size, size)
        return table.index_select(0, index.view(-1)).view(*index.shape, channels)

    total = corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)
    rows = (bottom - top)[:, :, None, None].float()
    cols = (right - left)[:, None, :, None].float()
    # (K, C, size, size) in channels-last memory, as facenet-pytorch's crops are (and 10x faster to max-pool)
    return (total.float() / rows / cols).permute(0, 3, 1, 2)


def _nms_whole_pixels(boxes: Tensor, scores: Tensor, groups: Tensor, group_count: int, threshold: float) -> Tensor:
    """IoU NMS within each of ``group_count`` groups, for boxes (K, 4) with whole, non-negative pixel coordinates
    (PNet's windows). Returns the indices kept, highest score first.

    One NMS call: the groups are moved apart onto a square grid of tiles, one tile per group,
    each larger than any box, so boxes of different groups never overlap. Whole numbers stay exact in float32
    up to 2**24, so the shift changes no overlap; ``batched_nms`` would give the same, but for many boxes it
    loops over the groups in Python.
    """
    if not len(boxes):
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    columns = math.isqrt(group_count - 1) + 1
    tile = boxes.max() + 1
    shift = torch.stack([groups % columns, groups // columns], 1).to(boxes) * tile
    return nms(boxes + shift.repeat(1, 2), scores, threshold)


def _min_nms(boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float) -> Tensor:
    """Greedy NMS per group with overlap = intersection / smaller area (+1 pixel widths, as the original
    MTCNN's "Min" mode). Returns the indices kept, highest score first.

    The ranking is ``np.argsort(scores)`` reversed, computed on the host (K floats) as facenet-pytorch does:
    ONet's scores often saturate at exactly 1.0, and between equal scores numpy's (unstable) sort decides
    which overlapping box survives. Then, vectorised on the device: box j suppresses box i when j ranks
    higher, shares i's group and overlaps it by more than ``threshold``; "kept = suppressed by no kept box"
    is solved by iterating from all-kept, which settles on the greedy answer within as many rounds as the
    longest chain of suppressions (usually 1 to 3).
    """
    order = torch.from_numpy(np.argsort(scores.cpu().numpy())[::-1].copy()).to(scores.device)
    b, g = boxes[order], groups[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    top_left = torch.maximum(b[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left + 1).clamp(min=0).prod(2)
    overlap = inter / torch.minimum(area[:, None], area[None, :])
    ranks_higher = torch.ones(len(b), len(b), dtype=torch.bool, device=b.device).triu(1)
    suppresses = (overlap > threshold) & ranks_higher & (g[:, None] == g[None, :])
    keep = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for _ in range(len(b)):
        settled = ~(suppresses & keep[:, None]).any(0)
        if torch.equal(settled, keep):
            break
        keep = settled
    return order[keep]


def _split(count: int, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, owner: np.ndarray) -> list[Faces]:
    """Per-image faces, largest box first (ties in area kept in the order facenet-pytorch's argsort gives)."""
    faces = []
    for index in range(count):
        mine = owner == index
        b, s, p = boxes[mine], scores[mine], landmarks[mine]
        order = np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]
        faces.append((b[order], s[order], p[order]))
    return faces
