"""Conv2D -> ReLU -> MaxPool2D executed as one step on the compiled backends."""
from __future__ import annotations

import numpy as np

from scratchcnn.layers.base import Layer
from scratchcnn.layers.conv2d import Conv2D
from scratchcnn.layers.maxpool2d import MaxPool2D
from scratchcnn.layers.relu import ReLU

__all__ = ["ConvReLUPool", "fuse_layers"]


class ConvReLUPool:
    """Runs a Conv2D, ReLU, MaxPool2D triple as one step, computing exactly the same function.

    The three layers keep their parameters and gradients; only the execution
    changes. Unfused, the conv output makes four trips through memory between the
    GEMMs (bias + reorder to NCHW, ReLU, pool, and back again for the gradient).
    Fused, ``conv_relu_pool_forward`` reads the GEMM's channel-major output once
    and writes only the pooled map, and ``conv_relu_pool_backward`` writes the
    gradient in the channel-major layout the weight and input GEMMs read.
    """

    def __init__(self, conv: Conv2D, relu: ReLU, pool: MaxPool2D):
        self.conv, self.relu, self.pool = conv, relu, pool
        self._cache: dict = {}

    def forward(self, x, training=True):
        conv, pool = self.conv, self.pool
        y, (n, c, h, w) = conv.gemm_forward(x)
        shape = (n,) + pool.output_shape((c, h, w))
        out, argmax = conv.K.conv_relu_pool_forward(
            y, conv.bias_or_zeros(), n, h, w, pool.kernel_size, pool.stride,
            out=pool._buffer("out", shape, x.dtype), argmax=pool._buffer("argmax", shape, np.int8))
        self._cache = {"out": out, "argmax": argmax, "hw": (h, w)}
        return out

    def backward(self, dout):
        conv, pool = self.conv, self.pool
        out, argmax, (h, w) = self._cache.pop("out"), self._cache.pop("argmax"), self._cache.pop("hw")
        dy, _ = conv.K.conv_relu_pool_backward(
            dout, argmax, out, h, w, pool.kernel_size, pool.stride,
            # The GEMM output y is spent once pooled, so its memory takes the gradient: a step then
            # touches fewer megabytes and more of them stay in the cache.
            dy=conv._buffer("y", (conv.out_channels, dout.shape[0] * h * w), dout.dtype),
            db=conv.bias_grad_or_scratch(dout.dtype))
        return conv.gemm_backward(dy)


def fuse_layers(layers: list[Layer]) -> list:
    """The execution plan of a layer list: each Conv2D, ReLU, MaxPool2D run becomes one ConvReLUPool."""
    plan, i = [], 0
    while i < len(layers):
        triple = layers[i:i + 3]
        if [type(layer) for layer in triple] == [Conv2D, ReLU, MaxPool2D]:
            plan.append(ConvReLUPool(*triple))
            i += 3
        else:
            plan.append(layers[i])
            i += 1
    return plan
