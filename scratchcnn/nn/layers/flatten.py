"""Flatten all axes but the batch axis."""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.layers.base import Layer

__all__ = ["Flatten"]


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), a reshape (no copy) in C order; backward reshapes back."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=True):
        self._cache = {"x_shape": tuple(x.shape)}
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._cache.pop("x_shape"))
