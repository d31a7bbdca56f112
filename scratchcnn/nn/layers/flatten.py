"""Flatten all axes but the batch axis."""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.layers.base import Layer

__all__ = ["Flatten"]


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), a reshape (no copy) in C order; backward reshapes back."""

    elementwise = False  # changes the layout: a spatial unit has no place after it

    def onnx_nodes(self, x, out, weight, helper):
        return [helper.make_node("Flatten", [x], [out], name=self.name, axis=1)]  # the same C-order reshape

    def fold_into(self, previous):
        return None

    def with_channel_affine(self, scale, shift):
        return None

    def explain_unit(self, x, out, image, channel, row, col):
        return None

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=True):
        self._cache = {"x_shape": tuple(x.shape)}
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._cache.pop("x_shape"))
