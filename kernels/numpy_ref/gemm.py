"""Matrix products and the dense layer's bias: the reference ``gemm``, ``bias_add``, ``bias_grad``."""
from __future__ import annotations

import numpy as np

from kernels.api import check_out, gemm_shape

__all__ = ["gemm", "bias_add", "bias_grad"]


def gemm(a, b, trans_a=False, trans_b=False, out=None):
    """General matrix product ``out = op(a) @ op(b)``, ``op`` transposing when asked.

    Parameters
    ----------
    a : ndarray, shape (M, K), or (K, M) with ``trans_a``
    b : ndarray, shape (K, N), or (N, K) with ``trans_b``
    out : ndarray, optional, shape (M, N), dtype of ``a``

    Returns
    -------
    out : ndarray, shape (M, N)

    Raises
    ------
    ValueError
        If the operands are not 2-D or their inner dimensions differ.

    Notes
    -----
    The product itself is BLAS ``sgemm``/``dgemm`` through NumPy; transposes are
    views, which BLAS reads without copying.
    """
    m, _, n = gemm_shape(a.shape, b.shape, trans_a, trans_b)
    if out is None:
        out = np.empty((m, n), a.dtype)
    check_out(out, (m, n), a.dtype, "gemm out")
    return np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)


def bias_add(y, b):
    """Add a bias row to every row of a dense layer's output, in place.

    y : (N, F), b : (F,); returns ``y`` with ``y[n, f] += b[f]``.
    """
    y += b
    return y


def bias_grad(dout, out=None):
    """Bias gradient of a dense layer: ``db[f] = sum_n dout[n, f]``; dout (N, F) -> (F,)."""
    return np.sum(dout, axis=0, out=out)
