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

import functools
import math
from typing import NamedTuple

import numpy as np

from .cvexact import clear_resize_caches, resize_bilinear_mosaic

PYRAMID_FACTOR = 0.709
# Levels up to this size (about 128 x 128) share a mosaic; larger ones run alone.
MOSAIC_MAX_PIXELS = 1 << 14
# Every level starts on a multiple of this, so that the 2x2 pooling windows of
# PNet start where they would start in the level alone.
ALIGN = 2


def pyramid_scales(height: int, width: int, min_face: int) -> list[float]:
    """Scales 12/min_face * 0.709^i, as many as keep the shorter side >= 12 px.
    Empty when the image's shorter side is below min_face (the first scale would already
    make it smaller than PNet's 12-pixel window)."""
    min_dim = min(height, width)
    n = math.floor(math.log(min_face / min_dim) / math.log(PYRAMID_FACTOR)) + 1
    return [(12.0 / min_face) * math.pow(PYRAMID_FACTOR, i) for i in range(max(n, 0))]


class Level(NamedTuple):
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


def _shelves(small: list[Level], width: int) -> list[Level]:
    """Levels placed left to right along shelves `width` wide; a level that no
    longer fits starts a new shelf below the tallest level of the last."""
    placed, x, y, shelf = [], 0, 0, 0
    for level in small:
        if x and x + level.w > width:
            x, y, shelf = 0, y + shelf, 0
        placed.append(Level(level.scale, level.h, level.w, y, x))
        x += _aligned(level.w)
        shelf = max(shelf, _aligned(level.h))
    return placed


def pack(small: list[Level]) -> tuple[int, int, list[Level]]:
    """Shelf packing of levels given largest first -> (height, width, placed levels).

    Shelves as wide as the first one, two, three... levels side by side are
    tried, and the packing with the least area is kept (PNet's work grows with
    the area): on the corpus, 1.1 to 1.3 times the levels' own area."""
    best = None
    for n in range(1, len(small) + 1):
        placed = _shelves(small, sum(_aligned(level.w) for level in small[:n]))
        height = max(p.y + p.h for p in placed)
        width = max(p.x + p.w for p in placed)
        if best is None or height * width < best[0] * best[1]:
            best = (height, width, placed)
    return best


class Plan(NamedTuple):
    """How the pyramid of one image size is computed: the levels that run alone,
    largest first, then the mosaic's size and the levels placed in it."""
    alone: tuple[Level, ...]
    mosaic_shape: tuple[int, int]
    placed: tuple[Level, ...]


@functools.lru_cache(maxsize=64)
def plan(height: int, width: int, min_face: int) -> Plan:
    """The pyramid of an image of this size: kept for the next image of the same
    size (the usual case in a batch)."""
    every = levels(height, width, min_face)
    small = [level for level in every if level.h * level.w <= MOSAIC_MAX_PIXELS]
    alone = tuple(every[:len(every) - len(small)])
    if not small:
        return Plan(alone, (0, 0), ())
    mosaic_h, mosaic_w, placed = pack(small)
    return Plan(alone, (mosaic_h, mosaic_w), tuple(placed))


def clear_caches() -> None:
    """Forget the plans and resize taps kept per image size."""
    plan.cache_clear()
    clear_resize_caches()


def mosaic(img: np.ndarray, pyramid_plan: Plan) -> np.ndarray:
    """img float32 (H, W, 3) -> the plan's mosaic (h, w, 3): its levels resized
    from img, each in its place, zero between them."""
    places = [(level.y, level.x, level.w, level.h) for level in pyramid_plan.placed]
    return resize_bilinear_mosaic(img, places, pyramid_plan.mosaic_shape)
