"""Max-pooling, global average pooling, and Conv2D -> ReLU -> MaxPool2D computed on a convolution's GEMM output."""
from __future__ import annotations

import numpy as np

from kernels.api import check_nchw, check_out, conv_output_size
from kernels.numpy_ref.activation import relu_backward, relu_forward
from kernels.numpy_ref.conv import _window, bias_add_nchw, bias_grad_nchw

__all__ = ["maxpool_forward", "maxpool_backward", "conv_relu_pool_forward", "conv_relu_pool_backward",
           "global_avgpool_forward", "global_avgpool_backward"]


def maxpool_forward(x, kernel_size, stride, out=None, argmax=None):
    """Max over each ``kernel_size x kernel_size`` window, remembering where it was.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size, stride : int
        Window side and step (pixels); windows overlap when ``stride < kernel_size``.
    out : ndarray, optional, shape (N, C, H_out, W_out), dtype of ``x``
    argmax : ndarray, optional, int8, shape (N, C, H_out, W_out)

    Returns
    -------
    out : ndarray, shape (N, C, H_out, W_out), ``H_out = (H - kernel_size)//stride + 1``
    argmax : ndarray, int8, same shape
        Position ``i*kernel_size + j`` of the maximum inside its window. Ties go to
        the first position in row-major order, so the routing is deterministic.
    """
    n, c, h, w = check_nchw(x)
    h_out = conv_output_size(h, kernel_size, stride, 0)
    w_out = conv_output_size(w, kernel_size, stride, 0)
    if out is None:
        out = np.empty((n, c, h_out, w_out), x.dtype)
    if argmax is None:
        argmax = np.empty((n, c, h_out, w_out), np.int8)
    check_out(out, (n, c, h_out, w_out), x.dtype, "maxpool_forward out")
    check_out(argmax, (n, c, h_out, w_out), np.int8, "maxpool_forward argmax")
    out[...] = _window(x, 0, 0, stride, h_out, w_out)
    argmax[...] = 0
    for i in range(kernel_size):
        for j in range(kernel_size):
            candidate = _window(x, i, j, stride, h_out, w_out)
            better = candidate > out  # strict: an equal value later in the window does not win
            np.copyto(out, candidate, where=better)
            np.copyto(argmax, i * kernel_size + j, where=better)
    return out, argmax


def maxpool_backward(dout, argmax, x_shape, kernel_size, stride, out=None):
    """Route each output gradient to the input pixel that was the window's maximum.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out)
    argmax : ndarray, int8, shape (N, C, H_out, W_out), from ``maxpool_forward``
    x_shape : tuple (N, C, H, W)
    kernel_size, stride : int (pixels)
    out : ndarray, optional, shape ``x_shape``

    Returns
    -------
    dx : ndarray, shape (N, C, H, W); zero except at the maxima, where overlapping
        windows that chose the same pixel add up.
    """
    if out is None:
        out = np.empty(x_shape, dout.dtype)
    check_out(out, tuple(x_shape), dout.dtype, "maxpool_backward out")
    h_out, w_out = dout.shape[2], dout.shape[3]
    out[...] = 0
    for i in range(kernel_size):
        for j in range(kernel_size):
            routed = np.where(argmax == i * kernel_size + j, dout, 0)
            _window(out, i, j, stride, h_out, w_out)[...] += routed
    return out


def conv_relu_pool_forward(y, b, n, h, w, kernel_size, stride, out=None, argmax=None):
    """Bias, ReLU and max-pooling applied to a convolution's GEMM output in one pass.

    Parameters
    ----------
    y : ndarray, shape (C, N*H*W)
        Channel-major GEMM output ``W_cols @ cols`` of a convolution (no bias yet).
    b : ndarray, shape (C,)
    n, h, w : int
        Batch size and the convolution's output height and width (pixels).
    kernel_size, stride : int
        Of the max-pooling (pixels).
    out : ndarray, optional, shape (N, C, H_out, W_out)
    argmax : ndarray, optional, int8, same shape

    Returns
    -------
    out : ndarray, ``maxpool(relu(y + b))`` in NCHW
    argmax : ndarray, int8, the window position of the maximum of ``y + b``

    Notes
    -----
    ReLU is monotone, so ``maxpool(relu(z)) = relu(maxpool(z))``: pooling first and
    clipping the pooled values is the same function with 1/kernel_size**2 of the
    ReLU work. Defined here by composition of the reference kernels.
    """
    z = bias_add_nchw(y, b, n).reshape(n, y.shape[0], h, w)
    out, argmax = maxpool_forward(z, kernel_size, stride, out, argmax)
    relu_forward(out, out=out)
    return out, argmax


def conv_relu_pool_backward(dout, argmax, out, h, w, kernel_size, stride, dy=None, db=None):
    """Gradient of ``conv_relu_pool_forward`` with respect to ``y`` and ``b``.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out)
    argmax, out : ndarray, from ``conv_relu_pool_forward``
    h, w, kernel_size, stride : int
        As in the forward pass.
    dy : ndarray, optional, shape (C, N*H*W)
    db : ndarray, optional, shape (C,)

    Returns
    -------
    dy : ndarray, shape (C, N*H*W), channel-major, ready for the weight and input GEMMs
    db : ndarray, shape (C,)

    Notes
    -----
    The chain rule through the three steps, in reverse: ReLU passes ``dout`` where
    ``out > 0``; pooling routes it to the argmax; the bias gradient sums it per channel.
    """
    n, c = dout.shape[:2]
    dz = maxpool_backward(relu_backward(dout, out), argmax, (n, c, h, w), kernel_size, stride)
    db, dy = bias_grad_nchw(dz, db=db, dout_cm=dy)
    return dy, db


def global_avgpool_forward(x, out=None):
    """The mean of each (image, channel) map: (N, C, H, W) -> (N, C).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    out : ndarray, optional, shape (N, C), dtype of ``x``

    Returns
    -------
    out : ndarray, shape (N, C), ``out[n, c] = sum_{h,w} x[n, c, h, w] / (H*W)``
        (summed in float64, then cast to the dtype of ``x``)

    Raises
    ------
    ValueError
        If ``x`` is not 4-D or ``out`` has the wrong shape or dtype.

    References
    ----------
    Lin, Chen & Yan (2014), "Network In Network", Section 3.2 (global average
    pooling in place of fully connected layers); He et al. (2016), Section 4.2
    (the CIFAR-10 ResNets end with it).

    Example
    -------
    >>> global_avgpool_forward(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
    array([[1.5, 5.5]], dtype=float32)
    """
    n, c, h, w = check_nchw(x)
    if out is None:
        out = np.empty((n, c), x.dtype)
    check_out(out, (n, c), x.dtype, "global_avgpool_forward out")
    out[...] = x.reshape(n, c, h * w).sum(axis=2, dtype=np.float64) / (h * w)
    return out


def global_avgpool_backward(dout, x_shape, out=None):
    """Gradient of ``global_avgpool_forward``: each map's gradient spread evenly over its pixels.

    Parameters
    ----------
    dout : ndarray, shape (N, C)
    x_shape : tuple (N, C, H, W), the forward input's shape
    out : ndarray, optional, shape ``x_shape``, dtype of ``dout``

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), ``dx[n, c, h, w] = dout[n, c] / (H*W)``

    Raises
    ------
    ValueError
        If ``dout`` is not (N, C) of ``x_shape`` or ``out`` has the wrong shape or dtype.
    """
    n, c, h, w = (int(s) for s in x_shape)
    if tuple(dout.shape) != (n, c):
        raise ValueError(f"global_avgpool_backward: dout must have shape {(n, c)}, got {tuple(dout.shape)}")
    if out is None:
        out = np.empty((n, c, h, w), dout.dtype)
    check_out(out, (n, c, h, w), dout.dtype, "global_avgpool_backward out")
    out[...] = (dout / (h * w))[:, :, None, None]
    return out
