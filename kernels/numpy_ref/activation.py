"""Element-wise layers: ReLU, inverted dropout, and the residual block's sum (with its ReLU)."""
from __future__ import annotations

import numpy as np

from kernels import _hash
from kernels.api import check_out

__all__ = ["relu_forward", "relu_backward", "dropout_forward", "dropout_backward", "add", "add_relu_forward"]


def relu_forward(x, out=None):
    """Rectified linear unit ``max(x, 0)``, element-wise, any shape (Nair & Hinton, 2010)."""
    return np.maximum(x, 0, out=out)


def relu_backward(dout, y, out=None):
    """Gradient of ReLU: ``dx = dout * (y > 0)``, with ``y`` the forward output.

    At exactly 0 the derivative is taken as 0, as in PyTorch.
    """
    return np.multiply(dout, y > 0, out=out)


def dropout_forward(x, p, seed, counter, out=None, mask=None):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p).

    Parameters
    ----------
    x : ndarray, any shape
    p : float in [0, 1)
        Drop probability.
    seed, counter : int
        The mask is a pure function of (seed, counter, element index), see
        ``kernels._hash``; use a new counter for every step.
    out, mask : ndarray, optional, shape and dtype of ``x``

    Returns
    -------
    out : ndarray, ``x * mask``
    mask : ndarray, ``0`` where dropped, ``1/(1-p)`` where kept

    References
    ----------
    Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural Networks
    from Overfitting", JMLR 15; the 1/(1-p) scaling at training time ("inverted")
    makes the layer the identity at inference.
    """
    if out is None:
        out = np.empty_like(x)
    if mask is None:
        mask = np.empty_like(x)
    with np.errstate(over="ignore"):
        key = _hash.stream_key(seed, counter)
        u = _hash.uniform(key, np.arange(x.size, dtype=np.uint64)).reshape(x.shape)
    # Compare in float32, the precision of u, so every backend draws the same mask.
    mask[...] = np.where(u >= np.float32(p), 1.0 / (1.0 - p), 0.0)
    np.multiply(x, mask, out=out)
    return out, mask


def dropout_backward(dout, mask, out=None):
    """Gradient of dropout: ``dx = dout * mask`` (same shape as ``dout``)."""
    return np.multiply(dout, mask, out=out)


def add(a, b, out=None):
    """Element-wise sum ``a + b`` of two arrays of the same shape and dtype, any shape.

    A residual block's backward sums the gradients of its two paths at the input
    with it (``dx = dx_main + dx_shortcut``).

    Parameters
    ----------
    a, b : ndarray, same shape and dtype
    out : ndarray, optional, shape and dtype of ``a`` (may be ``a`` or ``b`` itself)

    Returns
    -------
    out : ndarray, ``a + b``

    Raises
    ------
    ValueError
        If the shapes or dtypes differ, or ``out`` does not match them.
    """
    _check_pair(a, b, out, "add")
    return np.add(a, b, out=out)


def add_relu_forward(a, b, out=None):
    """``max(a + b, 0)`` element-wise: the end of a residual block (He et al., 2016, eq. 1 and Fig. 2).

    Parameters
    ----------
    a, b : ndarray, same shape and dtype
        The main path's output ``F(x)`` and the shortcut's (``x``, or its 1x1 projection).
    out : ndarray, optional, shape and dtype of ``a`` (may be ``a`` or ``b`` itself)

    Returns
    -------
    out : ndarray, ``relu(a + b)``

    Raises
    ------
    ValueError
        If the shapes or dtypes differ, or ``out`` does not match them.

    Notes
    -----
    The gradient is ``relu_backward(dout, out)`` for both ``a`` and ``b``: the sum
    passes its gradient unchanged to each addend.
    """
    _check_pair(a, b, out, "add_relu_forward")
    out = np.add(a, b, out=out)
    return np.maximum(out, 0, out=out)


def _check_pair(a, b, out, what):
    """Raise ValueError unless ``a``, ``b`` (and ``out``) share one shape and dtype."""
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(f"{what}: operands differ: shape {tuple(a.shape)} {a.dtype} and "
                         f"shape {tuple(b.shape)} {b.dtype}")
    if out is not None:
        check_out(out, a.shape, a.dtype, f"{what} out")
