"""Element-wise layers: ReLU and inverted dropout."""
from __future__ import annotations

import numpy as np

from kernels import _hash

__all__ = ["relu_forward", "relu_backward", "dropout_forward", "dropout_backward"]


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
