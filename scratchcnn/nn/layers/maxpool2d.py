"""2-D max-pooling."""
from __future__ import annotations

import numpy as np

from kernels.api import conv_output_size
from scratchcnn.nn.layers.base import Layer

__all__ = ["MaxPool2D"]


class MaxPool2D(Layer):
    """Maximum over ``kernel_size x kernel_size`` windows of each channel.

    Parameters
    ----------
    kernel_size : int
        Window side (pixels).
    stride : int, optional
        Step between windows (pixels); defaults to ``kernel_size`` (non-overlapping
        windows, as in Keras and PyTorch). Windows that do not fit are dropped (floor).

    Shapes
    ------
    x : (N, C, H, W) -> out : (N, C, H_out, W_out), ``H_out = (H - kernel_size)//stride + 1``.

    Notes
    -----
    The gradient of a max is 1 for the element that won and 0 for the others, so
    ``backward`` routes each ``dout`` entry to its window's argmax (ties: the first
    in row-major order) and adds where overlapping windows chose the same pixel.
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        stride = kernel_size if stride is None else stride
        for value, what in ((kernel_size, "kernel_size"), (stride, "stride")):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"MaxPool2D: {what} must be a positive int, got {value!r}")
        if kernel_size * kernel_size > 127:
            raise ValueError(f"MaxPool2D: kernel_size {kernel_size} too large (argmax is stored as int8)")
        self.kernel_size, self.stride = int(kernel_size), int(stride)

    elementwise = False

    def onnx_nodes(self, x, out, weight, helper):
        # floor (ceil_mode=0) and no padding, as here
        return [helper.make_node("MaxPool", [x], [out], name=self.name, kernel_shape=[self.kernel_size] * 2,
                                 strides=[self.stride] * 2)]

    def fold_into(self, previous):
        return None

    def with_channel_affine(self, scale, shift):
        return None  # max(a*x + b) = a*max(x) + b only for a > 0: not folded

    def explain_unit(self, x, out, image, channel, row, col):
        """``kind = "pool"``: ``window`` (k, k) float64, the input values the window covers;
        ``origin`` (row, col) of its top-left in the input; ``winner`` (u, v), the argmax inside
        the window (the first in row-major order on ties, as ``backward`` routes the gradient);
        ``output``, the max; ``framework_output``, the layer's own output there."""
        k, s = self.kernel_size, self.stride
        window = x[image, channel, row * s:row * s + k, col * s:col * s + k].astype(np.float64)
        u, v = np.unravel_index(int(np.argmax(window)), window.shape)
        return {"kind": "pool", "origin": (row * s, col * s), "window": window, "winner": (int(u), int(v)),
                "output": float(window[u, v]), "framework_output": float(out[image, channel, row, col])}

    def output_shape(self, input_shape):
        c, h, w = input_shape
        return (c, conv_output_size(h, self.kernel_size, self.stride, 0),
                conv_output_size(w, self.kernel_size, self.stride, 0))

    def flops(self, input_shape):
        c, h_out, w_out = self.output_shape(input_shape)
        return c * h_out * w_out * (self.kernel_size ** 2 - 1)  # comparisons

    def get_config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def forward(self, x, training=True):
        if len(x.shape) != 4:
            raise ValueError(f"{self.name or 'MaxPool2D'}: expected (N, C, H, W) input, got shape {tuple(x.shape)}")
        shape = (x.shape[0],) + self.output_shape(x.shape[1:])
        out, argmax = self.K.maxpool_forward(
            x, self.kernel_size, self.stride,
            out=self.workspace("out", shape, x.dtype), argmax=self.workspace("argmax", shape, np.int8))
        self._cache = {"argmax": argmax, "x_shape": tuple(x.shape)}
        return out

    def backward(self, dout):
        argmax, x_shape = self._cache.pop("argmax"), self._cache.pop("x_shape")
        return self.K.maxpool_backward(dout, argmax, x_shape, self.kernel_size, self.stride,
                                       out=self.workspace("dx", x_shape, dout.dtype))
