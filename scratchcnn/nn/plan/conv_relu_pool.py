"""``ConvReLUPool``: Conv2D -> ReLU -> MaxPool2D as one step."""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.plan.fused import FusedStep

__all__ = ["ConvReLUPool"]


class ConvReLUPool(FusedStep):
    """Conv2D -> ReLU -> MaxPool2D as one step: the same function, two passes over memory fewer.

    Unfused, the convolution's output makes four trips through memory between
    the GEMMs (bias + reorder to NCHW, ReLU, pool, and back again for the
    gradient). Fused, ``conv_relu_pool_forward`` reads the GEMM's channel-major
    output ``y`` once and writes only the pooled map (ReLU is monotone, so
    ``maxpool(relu(z)) = relu(maxpool(z))``), and ``conv_relu_pool_backward``
    writes the gradient in the channel-major layout the weight and input GEMMs
    read. The im2col + GEMM around it are Conv2D's (see its Notes).
    """

    kernels = ("im2col", "gemm", "conv_relu_pool_forward", "conv_relu_pool_backward", "gemm", "gemm",
               "col2im")

    def forward(self, x, training=True):
        conv, pool = self.layers[0], self.layers[2]
        K, (kh, kw) = self.K, conv.kernel_size
        conv.check_input(x, 4, 1, conv.in_channels, "in_channels")
        n = x.shape[0]
        c, h, w = conv.output_shape(x.shape[1:])
        cols = K.im2col(x, kh, kw, conv.stride, conv.padding,
                        out=self.workspace("cols", (conv.in_channels * kh * kw, n * h * w), x.dtype))
        y = K.gemm(conv.params["W"].reshape(c, -1), cols, out=self.workspace("y", (c, n * h * w), x.dtype))
        shape = (n,) + pool.output_shape((c, h, w))
        out, argmax = K.conv_relu_pool_forward(
            y, self.bias_of(conv, x.dtype), n, h, w, pool.kernel_size, pool.stride,
            out=self.workspace("out", shape, x.dtype), argmax=self.workspace("argmax", shape, np.int8))
        self._cache = {"cols": cols, "x_shape": tuple(x.shape), "out": out, "argmax": argmax, "hw": (h, w)}
        return out

    def backward(self, dout):
        conv, pool = self.layers[0], self.layers[2]
        K, (kh, kw) = self.K, conv.kernel_size
        cache, self._cache = self._cache, {}
        (h, w), c = cache["hw"], conv.out_channels
        db = conv.grads["b"] if conv.bias else self.workspace("db_unused", (c,), dout.dtype)
        # The GEMM output y is spent once pooled, so its memory takes the gradient: a step then
        # touches fewer megabytes and more of them stay in the cache.
        dy, _ = K.conv_relu_pool_backward(dout, cache["argmax"], cache["out"], h, w, pool.kernel_size,
                                          pool.stride, dy=self.workspace("y", (c, dout.shape[0] * h * w), dout.dtype),
                                          db=db)
        K.gemm(dy, cache["cols"], trans_b=True, out=conv.grads["W"].reshape(c, -1))
        if not conv.requires_input_grad:
            return None
        # cols is spent once dW is known, so its memory takes dcols.
        dcols = K.gemm(conv.params["W"].reshape(c, -1), dy, trans_a=True, out=cache["cols"])
        return K.col2im(dcols, cache["x_shape"], kh, kw, conv.stride, conv.padding,
                        out=self.workspace("dx", cache["x_shape"], dout.dtype))
