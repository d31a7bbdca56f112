"""Conv2D -> BatchNorm -> ReLU (-> MaxPool2D): the kernels of the fused block, defined by composition.

A convolution followed by batch normalisation and ReLU is three layers, but
only two passes over memory are needed if the kernels are cut differently:

=========================  ==================================================================
kernel                     computes
=========================  ==================================================================
``conv2d_affine_forward``   ``out = act(scale * conv(x, w) + shift [+ residual])`` straight into NCHW, and the
                           per-channel sum and sum of squares of ``out`` (the batch statistics)
``bn_relu_forward``        ``relu(scale * z + shift)``: BN with its statistics folded into one
                           scale and shift per channel, then ReLU
``bn_relu_pool_forward``   the same, max-pooled
``bn_relu_backward``       the gradient through ReLU (and the pooling), and the two sums the BN
``bn_relu_pool_backward``  backward needs: ``sum(g)`` (= dbeta) and ``sum(g * x_hat)`` (= dgamma)
``bn_add_relu_forward``    the end of a residual block: ``relu(scale * z + shift + r_scale * r + r_shift)``,
                           BN of the main path plus the shortcut ``r`` (the block's input, or a
                           projection's convolution output with its own BN as ``r_scale``, ``r_shift``)
``bn_backward_sums``       BN's two backward sums for a gradient that meets no ReLU (a projection
                           shortcut's BN, whose output gradient is the block's)
``conv2d_affine_backward``  ``dz = g_scale*g + z_scale*z + shift`` (the BN backward, which is
                           linear in g and z per channel), then the convolution's weight and
                           input gradients
=========================  ==================================================================

Why the BN backward is a per-channel linear map: with ``M`` values per channel,
``k = gamma * inv_std`` and ``x_hat = (z - mean) * inv_std``, Ioffe & Szegedy's
(2015, Section 3) ``dz = k/M * (M*g - dbeta - x_hat*dgamma)`` expands to
``dz = k*g - (k*inv_std*dgamma/M) * z + k*(inv_std*dgamma*mean - dbeta)/M``.
So once the two sums are known, the gradient of the convolution's output is
one multiply-add per element, and it can be made where the convolution's
backward reads it, never stored.

This module is the definition the fast backends are held to: each function is
the reference kernels of ``conv``, ``gemm``, ``pool`` and ``activation`` put
together. Statistics are float64 arrays of shape (2, C). Every kernel raises
ValueError, naming the array, when a caller's ``out``-style array (``out``, ``g``,
``sums``, ``stats``, ``dw``, ``dx``, ``argmax``) has the wrong shape or dtype.
"""
from __future__ import annotations

import numpy as np

from kernels.api import check_nchw, check_out
from kernels.numpy_ref.activation import relu_backward, relu_forward
from kernels.numpy_ref.conv import col2im, im2col
from kernels.numpy_ref.gemm import gemm
from kernels.numpy_ref.pool import maxpool_backward, maxpool_forward

__all__ = ["conv2d_affine_forward", "conv2d_affine_backward", "bn_relu_forward", "bn_relu_backward",
           "bn_relu_pool_forward", "bn_relu_pool_backward", "bn_add_relu_forward", "bn_backward_sums"]


def _channel(v):
    """A per-channel vector (C,) shaped to broadcast against NCHW."""
    return v.reshape(1, -1, 1, 1)


def _channel_sums(a, b=None):
    """``sum(a)`` and ``sum(a*b)`` (or ``sum(a*a)``) per channel of NCHW arrays, in float64: (2, C)."""
    a = a.astype(np.float64)
    b = a if b is None else b.astype(np.float64)
    return np.stack([a.sum(axis=(0, 2, 3)), (a * b).sum(axis=(0, 2, 3))])


def conv2d_affine_forward(x, w, scale, shift, relu, stride=1, padding=0, out=None, stats=None, residual=None):
    """A convolution with a per-channel affine epilogue, written in NCHW, and its output's statistics.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C, kh, kw)
    scale, shift : ndarray, shape (F,)
        ``out = scale * conv(x, w) + shift`` per output channel: ``scale = 1``,
        ``shift = bias`` is a plain convolution; at inference BN's running
        statistics fold into them (``scale = gamma*inv_std``).
    relu : bool
        Clip the result at zero (an inference Conv-BN-ReLU in one kernel).
    stride, padding : int
    out : ndarray, optional, shape (N, F, H_out, W_out), dtype of ``x``
    stats : ndarray, optional, float64, shape (2, F)
        If given, written with the per-channel sum and sum of squares of ``out``.
    residual : ndarray, optional, shape of ``out``
        Added before the ReLU: ``out = act(scale * conv(x, w) + shift + residual)``,
        the inference epilogue of a residual block's last convolution (He et al.,
        2016, eq. 1: the shortcut's value joins the sum before the block's ReLU).

    Returns
    -------
    out, stats : the output, and ``stats`` (None when not asked for)

    Raises
    ------
    ValueError
        If ``out`` or ``stats`` has the wrong shape or dtype, or ``x`` is not 4-D.

    Notes
    -----
    ``conv(x, w)`` is im2col + GEMM (Chellapilla, Puri & Simard, 2006); a fast
    backend does it one image at a time, so the columns of one image stay in cache.
    """
    n, c, h, wd = check_nchw(x)
    f, _, kh, kw = w.shape
    cols = im2col(x, kh, kw, stride, padding)
    y = gemm(w.reshape(f, -1), cols)  # (F, N*H_out*W_out), channel-major
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (wd + 2 * padding - kw) // stride + 1
    z = y.reshape(f, n, h_out, w_out).transpose(1, 0, 2, 3) * _channel(scale) + _channel(shift)
    if out is None:
        out = np.empty((n, f, h_out, w_out), x.dtype)
    check_out(out, (n, f, h_out, w_out), x.dtype, "conv2d_affine_forward out")
    out[...] = z
    if residual is not None:
        check_out(residual, (n, f, h_out, w_out), x.dtype, "conv2d_affine_forward residual")
        out += residual
    if relu:
        relu_forward(out, out=out)
    if stats is not None:
        check_out(stats, (2, f), np.float64, "conv2d_affine_forward stats")
        stats[...] = _channel_sums(out)
    return out, stats


def conv2d_affine_backward(g, z, g_scale, z_scale, shift, x, w, stride=1, padding=0, input_grad=True, dw=None,
                    dx=None):
    """Weight and input gradients of a convolution whose output gradient is ``g_scale*g + z_scale*z + shift``.

    Parameters
    ----------
    g, z : ndarray, shape (N, F, H_out, W_out)
        The gradient arriving at the BN layer's output (after ReLU and pooling)
        and the convolution's output. For a plain convolution pass
        ``g_scale = 1`` and ``z_scale = shift = 0``.
    g_scale, z_scale, shift : ndarray, shape (F,)
        The per-channel linear map that gives ``dz``, the gradient of the
        convolution's output (module docstring).
    x : ndarray, shape (N, C, H, W), the convolution's input
    w : ndarray, shape (F, C, kh, kw)
    stride, padding : int
    input_grad : bool
        Compute ``dx`` (False for a network's first layer, whose input gradient nobody reads).
    dw : ndarray, optional, shape of ``w``
    dx : ndarray, optional, shape of ``x``

    Returns
    -------
    dw : ``sum over images of dz ⋆ x`` (the weight gradient, GEMM ``dz @ cols^T``)
    dx : ``col2im(w^T @ dz)``, or None without ``input_grad``

    Raises
    ------
    ValueError
        If ``dw`` or ``dx`` has the wrong shape or dtype, or ``x`` is not 4-D.
    """
    n, c, h, wd = check_nchw(x)
    f = w.shape[0]
    kh, kw = w.shape[2:]
    dz = _channel(g_scale) * g + _channel(z_scale) * z + _channel(shift)
    dz_cm = np.ascontiguousarray(dz.transpose(1, 0, 2, 3).reshape(f, -1), dtype=x.dtype)
    cols = im2col(x, kh, kw, stride, padding)
    if dw is None:
        dw = np.empty(w.shape, x.dtype)
    check_out(dw, w.shape, x.dtype, "conv2d_affine_backward dw")
    dw[...] = gemm(dz_cm, cols, trans_b=True).reshape(w.shape)
    if not input_grad:
        return dw, None
    return dw, col2im(gemm(w.reshape(f, -1), dz_cm, trans_a=True), x.shape, kh, kw, stride, padding, out=dx)


def bn_relu_forward(z, scale, shift, out=None):
    """``relu(scale * z + shift)`` per channel of NCHW ``z``: batch normalisation folded to an affine map, then ReLU.

    ``scale = gamma * inv_std`` and ``shift = beta - mean * scale`` for the batch
    (training) or running (inference) statistics. out: optional, shape of ``z``.
    """
    check_nchw(z, "z")
    if out is None:
        out = np.empty_like(z)
    check_out(out, z.shape, z.dtype, "bn_relu_forward out")
    out[...] = _channel(scale) * z + _channel(shift)
    return relu_forward(out, out=out)


def bn_relu_pool_forward(z, scale, shift, kernel_size, stride, out=None, argmax=None):
    """``maxpool(relu(scale * z + shift))`` with the int8 window position of each maximum.

    As ``maxpool_forward`` applied to ``bn_relu_forward``'s affine map (pooling
    before the ReLU, which is monotone, as in ``conv_relu_pool_forward``).
    Returns out (N, C, H_out, W_out) and argmax (int8, same shape).
    """
    check_nchw(z, "z")
    out, argmax = maxpool_forward(_channel(scale) * z + _channel(shift), kernel_size, stride, out, argmax)
    relu_forward(out, out=out)
    return out, argmax


def _bn_sums(g, z, mean, inv_std, sums):
    if sums is None:
        sums = np.empty((2, z.shape[1]), np.float64)
    check_out(sums, (2, z.shape[1]), np.float64, "sums")
    sums[...] = _channel_sums(g, (z - _channel(mean)) * _channel(inv_std))
    return sums


def bn_relu_backward(dout, out, z, mean, inv_std, g=None, sums=None):
    """The gradient through ReLU, and the sums batch normalisation's backward needs.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H, W), gradient of the ReLU's output ``out``
    out : ndarray, from ``bn_relu_forward``
    z : ndarray, the BN layer's input (the convolution's output), same shape
    mean, inv_std : ndarray, shape (C,), the batch statistics of ``z``
    g : ndarray, optional, shape of ``z``
    sums : ndarray, optional, float64, shape (2, C)

    Returns
    -------
    g : ``dout`` where ``out > 0``, else 0 (the gradient at BN's output)
    sums : ``[sum(g), sum(g * x_hat)]`` per channel, ``x_hat = (z - mean) * inv_std``:
        BN's ``dbeta`` and ``dgamma``.
    """
    g = relu_backward(dout, out, out=g)
    return g, _bn_sums(g, z, mean, inv_std, sums)


def bn_relu_pool_backward(dout, argmax, out, z, mean, inv_std, kernel_size, stride, g=None, sums=None):
    """As ``bn_relu_backward`` for ``bn_relu_pool_forward``: ``dout`` (pooled shape) goes through the
    ReLU, is routed to each window's maximum (``maxpool_backward``), giving ``g`` in the shape of ``z``."""
    g = maxpool_backward(relu_backward(dout, out), argmax, z.shape, kernel_size, stride, out=g)
    return g, _bn_sums(g, z, mean, inv_std, sums)


def bn_add_relu_forward(z, scale, shift, residual, residual_scale, residual_shift, out=None):
    """The end of a residual block: ``relu(scale * z + shift + residual_scale * residual + residual_shift)``.

    Parameters
    ----------
    z : ndarray, shape (N, C, H, W)
        The main path's last convolution output; ``scale``, ``shift`` (C,) its BN folded
        to an affine map (``batchnorm_batch_affine``).
    residual : ndarray, shape of ``z``
        The shortcut: the block's input (``residual_scale = 1``, ``residual_shift = 0``,
        the identity), or a 1x1 projection's convolution output with that
        projection's BN as ``residual_scale``, ``residual_shift`` (C,).
    out : ndarray, optional, shape of ``z``

    Returns
    -------
    out : the block's output, ``relu(F(x) + S(x))`` (He et al., 2016, eq. 1 and Fig. 2)

    Raises
    ------
    ValueError
        If ``residual`` or ``out`` has the wrong shape or dtype.
    """
    check_nchw(z, "z")
    check_out(residual, z.shape, z.dtype, "bn_add_relu_forward residual")
    if out is None:
        out = np.empty_like(z)
    check_out(out, z.shape, z.dtype, "bn_add_relu_forward out")
    out[...] = (_channel(scale) * z + _channel(shift)) + (_channel(residual_scale) * residual
                                                          + _channel(residual_shift))
    return relu_forward(out, out=out)


def bn_backward_sums(g, z, mean, inv_std, sums=None):
    """``[sum(g), sum(g * x_hat)]`` per channel (float64 (2, C)), ``x_hat = (z - mean) * inv_std``: BN's
    ``dbeta`` and ``dgamma`` for a gradient ``g`` (N, C, H, W) at BN's output that passes no ReLU of its
    own (a projection shortcut's BN, whose output gradient is the block sum's). Raises ValueError for a
    ``sums`` of the wrong shape or dtype."""
    check_nchw(z, "z")
    return _bn_sums(g, z, mean, inv_std, sums)
