"""Rectified linear unit."""
from __future__ import annotations

from scratchcnn.nn.layers.base import Layer

__all__ = ["ReLU"]


class ReLU(Layer):
    """``out = max(x, 0)`` element-wise (Nair & Hinton, 2010); any input shape.

    Notes
    -----
    ``dx = dout * (out > 0)``: the gradient passes where the unit was active and
    stops where it was clipped (derivative at 0 taken as 0).
    """

    def forward(self, x, training=True):
        out = self.K.relu_forward(x, out=self._buffer("out", x.shape, x.dtype))
        self._cache = {"out": out}
        return out

    def backward(self, dout):
        out = self._cache.pop("out")
        return self.K.relu_backward(dout, out, out=self._buffer("dx", dout.shape, dout.dtype))
