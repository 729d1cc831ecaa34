"""A CNN read from a `.dat` file, made ready to run on batches of images."""
from __future__ import annotations

import numpy as np

from . import layers, native
from .datfile import Conv, FullyConnected, Layer, MaxPool, PReLU, Sigmoid


class Network:
    """Runs the layers of one network. Weight matrices are laid out once, here;
    calling the network only computes. Nothing is changed by a call, so one
    network can serve several threads at once.

    `planar` takes float32 (3, N, H, W) maps in the order the C++ feeds them
    (R, G, B) and returns (O, N, h, w) maps when the network ends on maps
    (PNet), else (N, O). Calling the network does the same on (N, H, W, 3)
    maps and returns (N, h, w, O) or (N, O)."""

    def __init__(self, net_layers: tuple[Layer, ...], name: str = "network"):
        native.check_fma()
        self.name = name
        self._steps = [self._prepare(layer) for layer in net_layers]
        for i, step in enumerate(self._steps[:-1]):  # a conv then a PReLU: also as one pass
            after = self._steps[i + 1]
            if step[0] == "conv" and after[0] == "prelu" and after[1].size == step[1].shape[1]:
                self._steps[i] = step + (native.ConvWeights(step[1].matrix, after[1]),)
        self.layers = tuple(net_layers)
        self._output_regions = {}

    @staticmethod
    def _prepare(layer: Layer):
        if isinstance(layer, Conv):
            _, _, kh, kw = layer.kernels.shape
            return ("conv", native.ConvWeights(layers.conv_weight_matrix(layer.kernels, layer.biases)), kh, kw)
        if isinstance(layer, MaxPool):
            return ("pool", layer.kernel_x, layer.kernel_y, layer.stride_x, layer.stride_y)
        if isinstance(layer, FullyConnected):
            weights = np.ascontiguousarray(layer.weights, np.float32)
            return ("fc", weights, layer.biases.reshape(-1), layers.fully_connected_weights(weights))
        if isinstance(layer, PReLU):
            return ("prelu", np.ascontiguousarray(layer.slopes, np.float32).reshape(-1))
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
        """Drop what was kept per map size (mosaic regions)."""
        self._output_regions = {}

    def output_regions(self, regions: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
        """output_region of each region, remembered (the same mosaics recur)."""
        key = tuple(regions)
        known = self._output_regions  # one dict for this call, whatever other threads do
        found = known.get(key)
        if found is None:
            found = [self.output_region(r) for r in regions]
            if len(known) > 256:
                self._output_regions = known = {}
            known[key] = found
        return found

    def __call__(self, maps: np.ndarray, trace: list | None = None,
                 regions: list[tuple[int, int, int, int]] | None = None) -> np.ndarray:
        """planar() for (N, H, W, C) maps; the output, and each traced layer output,
        as (N, h, w, O) maps or (N, O)."""
        planar_trace = [] if trace is not None else None
        out = self.planar(np.ascontiguousarray(np.asarray(maps, np.float32).transpose(3, 0, 1, 2)),
                          planar_trace, regions)
        if trace is not None:
            trace.extend(channels_last(x) for x in planar_trace)
        return channels_last(out)

    def planar(self, maps: np.ndarray, trace: list | None = None,
               regions: list[tuple[int, int, int, int]] | None = None) -> np.ndarray:
        """maps (C, N, H, W) -> (O, N, h, w) or (N, O). trace, if given, receives
        every layer's output (for parity tests).

        regions, if given, are separate images (y, x, h, w) placed in the input:
        each pooling window is cut at their edges as at the maps' edge, so every
        region's outputs (see output_region) are those of the region alone. Each
        region's y and x must be multiples of the pooling strides, and at every
        pooling layer the regions must lie kernel - 1 pixels apart (as levels
        placed whole in a mosaic do after a convolution: it shrinks each region
        by kernel - 1 while the mosaic stays whole)."""
        x = maps
        steps = self._steps
        i = 0
        while i < len(steps):
            step = steps[i]
            kind = step[0]
            if kind == "conv":
                fuse = trace is None and len(step) > 4  # with the PReLU after it
                x = layers.conv(x, step[4] if fuse else step[1], step[2], step[3])
                if regions is not None:
                    regions = [_step_region(step, r) for r in regions]
                i += fuse
            elif kind == "pool":
                if regions is not None:
                    x = layers.extend_edges(x if x is not maps else x.copy(), regions, step[1], step[2])
                    regions = [_step_region(step, r) for r in regions]
                x = layers.max_pool(x, *step[1:])
            elif kind == "fc":
                weights, biases, prepared = step[1:]
                if x.ndim == 4 and x.shape[0] == weights.shape[0] and x.shape[0] > 1:
                    x = layers.fully_connected_maps(x, weights, biases, prepared)
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
            i += 1
        return x


def channels_last(x: np.ndarray) -> np.ndarray:
    """Planar (C, N, H, W) maps -> (N, H, W, C); flat (N, F) activations unchanged."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0)) if x.ndim == 4 else x


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
