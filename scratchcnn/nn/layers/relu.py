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

    elementwise = True

    def onnx_nodes(self, x, out, weight, helper):
        return [helper.make_node("Relu", [x], [out], name=self.name)]

    def fold_into(self, previous):
        return None  # a ReLU is not affine: nothing to fold

    def with_channel_affine(self, scale, shift):
        return None

    def explain_unit(self, x, out, image, channel, row, col):
        return None  # max(x, 0): the value before and after say it all

    def forward(self, x, training=True):
        out = self.K.relu_forward(x, out=self.workspace("out", x.shape, x.dtype))
        self._cache = {"out": out}
        return out

    def backward(self, dout):
        out = self._cache.pop("out")
        return self.K.relu_backward(dout, out, out=self.workspace("dx", dout.shape, dout.dtype))
