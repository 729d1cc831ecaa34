"""Option types the commands share: score thresholds and pixel counts."""
from __future__ import annotations

import math
import re

import click


class Threshold(click.ParamType):
    """A score threshold: a number in [0, 1] (NaN refused); shown alike in
    every command."""
    name = "FLOAT"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if math.isnan(number) or not 0.0 <= number <= 1.0:
            self.fail(f"{value} is not in [0, 1]", param, ctx)
        return number


_PIXELS = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*")


_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


class PixelCount(click.ParamType):
    """A positive whole number of pixels: 1000000, 1e6, 1M, 2.5k (K, M, G:
    thousand, million, billion)."""
    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            number = value
        else:
            found = _PIXELS.fullmatch(str(value))
            if not found:
                self.fail(f"{value!r} is not a pixel count (e.g. 1000000, 1e6, 10M)", param, ctx)
            from fractions import Fraction  # it imports decimal (2 ms): only for a count typed out

            exact = Fraction(found.group(1)) * _SCALE[found.group(2).lower()]
            if exact.denominator != 1:
                self.fail(f"{value} is not a whole number of pixels", param, ctx)
            number = int(exact)
        if number < 1:
            self.fail(f"{value} is not at least 1", param, ctx)
        return number
