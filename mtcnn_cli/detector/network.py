"""A CNN read from a `.dat` file, made ready to run on batches of images."""
from __future__ import annotations

import numpy as np

from . import layers
from .datfile import Conv, FullyConnected, Layer, MaxPool, PReLU, Sigmoid


class Network:
    """Runs the layers of one network. Weight matrices are laid out once, here;
    calling the network only computes.

    Input: float32 (N, H, W, 3) maps in the order the C++ feeds them (R, G, B).
    Output: (N, h, w, O) maps when the network ends on maps (PNet), else (N, O)."""

    def __init__(self, net_layers: tuple[Layer, ...], name: str = "network"):
        self.name = name
        self._steps = [self._prepare(layer) for layer in net_layers]
        self.layers = tuple(net_layers)
        self._output_regions = {}

    @staticmethod
    def _prepare(layer: Layer):
        if isinstance(layer, Conv):
            _, _, kh, kw = layer.kernels.shape
            return ("conv", layers.conv_weight_matrix(layer.kernels, layer.biases), kh, kw)
        if isinstance(layer, MaxPool):
            return ("pool", layer.kernel_x, layer.kernel_y, layer.stride_x, layer.stride_y)
        if isinstance(layer, FullyConnected):
            weights = np.ascontiguousarray(layer.weights, np.float32)
            return ("fc", weights, layer.biases.reshape(-1), layers.fully_connected_weights(weights))
        if isinstance(layer, PReLU):
            return ("prelu", layers.SlopeRows(layer.slopes))
        if isinstance(layer, Sigmoid):
            return ("sigmoid",)
        raise TypeError(f"unknown layer {layer!r}")

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Height and width of the maps this network makes from an h x w input."""
        return self.output_region((0, 0, h, w))[2:]

    def output_region(self, region: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Where the outputs of an input region (y, x, h, w) lie in the output maps."""
        for step in self._steps:
            region = _step_region(step, region)
        return region

    def forget_sizes(self) -> None:
        """Drop what was kept per map size: mosaic regions, repeated PReLU slopes."""
        self._output_regions.clear()
        for step in self._steps:
            if step[0] == "prelu":
                step[1].clear()

    def output_regions(self, regions: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
        """output_region of each region, remembered (the same mosaics recur)."""
        key = tuple(regions)
        if key not in self._output_regions:
            if len(self._output_regions) > 256:
                self._output_regions.clear()
            self._output_regions[key] = [self.output_region(r) for r in regions]
        return self._output_regions[key]

    def __call__(self, maps: np.ndarray, trace: list | None = None,
                 regions: list[tuple[int, int, int, int]] | None = None) -> np.ndarray:
        """trace, if given, receives every layer's output (for parity tests).

        regions, if given, are separate images (y, x, h, w) placed in the input:
        each pooling window is cut at their edges as at the maps' edge, so every
        region's outputs (see output_region) are those of the region alone. Each
        region's y and x must be multiples of the pooling strides, and at every
        pooling layer the regions must lie kernel - 1 pixels apart (as levels
        placed whole in a mosaic do after a convolution: it shrinks each region
        by kernel - 1 while the mosaic stays whole)."""
        x = maps
        for step in self._steps:
            kind = step[0]
            if kind == "conv":
                x = layers.conv(x, step[1], step[2], step[3])
                if regions is not None:
                    regions = [_step_region(step, r) for r in regions]
            elif kind == "pool":
                if regions is not None:
                    x = layers.extend_edges(x if x is not maps else x.copy(), regions, step[1], step[2])
                    regions = [_step_region(step, r) for r in regions]
                x = layers.max_pool(x, *step[1:])
            elif kind == "fc":
                weights, biases, prepared = step[1:]
                if x.ndim == 4 and x.shape[3] == weights.shape[0] and x.shape[3] > 1:
                    x = layers.fully_connected_maps(x, weights, biases)
                elif regions is not None:
                    raise ValueError(f"{self.name}: regions need maps all through; a fully connected "
                                     f"layer over {x.shape} flattens them")
                else:
                    flat = layers.flatten(x) if x.ndim == 4 else x
                    x = layers.fully_connected(flat, weights, biases, prepared)
            elif kind == "prelu":
                x = layers.prelu(x, step[1])
            else:
                x = layers.sigmoid(x)
            if trace is not None:
                trace.append(x.copy())
        return x


def _step_region(step: tuple, region: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Where a region (y, x, h, w) of a step's input lies in its output."""
    y, x, h, w = region
    if step[0] == "conv":
        return y, x, h - step[2] + 1, w - step[3] + 1
    if step[0] == "pool":
        kx, ky, sx, sy = step[1:]
        if y % sy or x % sx:
            raise ValueError(f"region {region} does not start on the {sx}x{sy} pooling grid")
        return y // sy, x // sx, layers.pooled_size(h, ky, sy), layers.pooled_size(w, kx, sx)
    return region
