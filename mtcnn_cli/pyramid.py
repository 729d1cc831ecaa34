"""The image pyramid PNet scans: its scales, and its small levels packed into one mosaic.

A pyramid level of a small image is a few hundred pixels, and running PNet on each
level alone costs far more in per-call overhead than in arithmetic. Levels of at
most MOSAIC_MAX_PIXELS are therefore placed side by side in one image, a mosaic,
and PNet runs once over it, told where each level lies (Network's `regions`): it
cuts its pooling windows at every level's edge as it would at an image's edge,
so each level's outputs have the bits of a pass over that level alone. Outputs
near a level's edge that would see a neighbour are not read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cvexact import resize_bilinear_many

PYRAMID_FACTOR = 0.709
# Levels up to this size (about 128 x 128) share a mosaic; larger ones run alone.
MOSAIC_MAX_PIXELS = 1 << 14
# Every level starts on a multiple of this, so that the 2x2 pooling windows of
# PNet start where they would start in the level alone.
ALIGN = 2


def pyramid_scales(height: int, width: int, min_face: int) -> list[float]:
    """Scales 12/min_face * 0.709^i, as many as keep the shorter side >= 12 px.
    Empty when the image is smaller than about 0.709 * min_face."""
    min_dim = min(height, width)
    n = math.floor(math.log(min_face / min_dim) / math.log(PYRAMID_FACTOR)) + 1
    return [(12.0 / min_face) * math.pow(PYRAMID_FACTOR, i) for i in range(max(n, 0))]


@dataclass(frozen=True)
class Level:
    """One pyramid level: the scale, its size (h, w), and where it sits in the
    mosaic (y, x), or (0, 0) for a level that runs alone."""
    scale: float
    h: int
    w: int
    y: int = 0
    x: int = 0

    @property
    def region(self) -> tuple[int, int, int, int]:
        return self.y, self.x, self.h, self.w


def levels(height: int, width: int, min_face: int) -> list[Level]:
    """Every level of the pyramid, largest first: size ceil(side * scale)."""
    return [Level(s, math.ceil(height * s), math.ceil(width * s))
            for s in pyramid_scales(height, width, min_face)]


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def pack(small: list[Level]) -> tuple[int, int, list[Level]]:
    """Shelf packing of levels given largest first -> (height, width, placed levels).

    The mosaic is as wide as the first two levels side by side; levels go left to
    right along a shelf, and one that no longer fits starts a new shelf below the
    tallest level of the last. With the pyramid's factor of 0.709 the rest of the
    levels fill about one more shelf, so the mosaic wastes about a fifth of its area."""
    width = sum(_aligned(level.w) for level in small[:2])
    placed, x, y, shelf = [], 0, 0, 0
    for level in small:
        if x and x + level.w > width:
            x, y, shelf = 0, y + shelf, 0
        placed.append(Level(level.scale, level.h, level.w, y, x))
        x += _aligned(level.w)
        shelf = max(shelf, _aligned(level.h))
    height = max(p.y + p.h for p in placed)
    return height, max(p.x + p.w for p in placed), placed


def mosaic(img: np.ndarray, small: list[Level]) -> tuple[np.ndarray, list[Level]]:
    """img float32 (H, W, 3) -> the levels resized from it and packed: the mosaic
    (h, w, 3) (zero between levels) and the levels with their places."""
    height, width, placed = pack(small)
    out = np.zeros((height, width, img.shape[2]), np.float32)
    resized = resize_bilinear_many(img, [(level.w, level.h) for level in placed])
    for level, pixels in zip(placed, resized):
        out[level.y:level.y + level.h, level.x:level.x + level.w] = pixels
    return out, placed
