"""OpenFace's binary CNN model format (`.dat`) and `MTCNN_detector.txt`.

A network file is `int32 depth` followed by `depth` layers, each introduced by an
`int32` type code (little-endian throughout). Matrices are `int32 rows, cols,
opencv_type` followed by row-major data; only CV_32F (type 5) occurs.

This module only describes and (de)serialises networks; it computes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONV, MAX_POOL, FULLY_CONNECTED, PRELU, SIGMOID = 0, 1, 2, 3, 4
CV_32F = 5


class ModelError(Exception):
    """A model file or folder that cannot be used. The message names the file,
    the byte offset where relevant, and the problem."""


@dataclass(frozen=True, eq=False)
class Conv:
    """kernels: float32 (n_in, n_out, kh, kw), stored kernel [i][o] as a kh x kw
    matrix; biases: float32 (n_out,)."""
    kernels: np.ndarray
    biases: np.ndarray


@dataclass(frozen=True)
class MaxPool:
    kernel_x: int
    kernel_y: int
    stride_x: int
    stride_y: int


@dataclass(frozen=True, eq=False)
class FullyConnected:
    """biases: float32 (n_out, 1) matrix; weights: float32 (n_in, n_out) matrix,
    both exactly as stored in the file."""
    biases: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True, eq=False)
class PReLU:
    """slopes: float32 (channels, 1) matrix as stored."""
    slopes: np.ndarray


@dataclass(frozen=True)
class Sigmoid:
    pass


Layer = Conv | MaxPool | FullyConnected | PReLU | Sigmoid
