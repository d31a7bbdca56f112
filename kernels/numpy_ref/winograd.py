"""Winograd convolution F(m x m, 3 x 3), NumPy reference (Lavin & Gray, 2016).

Lavin, A. and Gray, S. (2016), "Fast Algorithms for Convolutional Neural Networks",
CVPR, Sections 4 and 5. A 3x3 cross-correlation of one ``alpha x alpha`` input tile
``d`` (``alpha = m + 2``) with a filter ``g`` gives an ``m x m`` output tile

    Y = A^T [ (G g G^T)  (.)  (B^T d B) ] A            (Lavin & Gray, Eq. 8)

where ``(.)`` is the element-wise product. Summed over input channels, the
element-wise stage becomes, for each of the ``alpha^2`` positions ``(xi, nu)`` of a
tile, one matrix product over channels (Eq. 10-12)::

    U[xi, nu] = (G g G^T)[xi, nu]     (C_out, C_in)   filter transform, once per step
    V[xi, nu] = (B^T d B)[xi, nu]     (C_in, P)       input transform, P tiles
    M[xi, nu] = U[xi, nu] @ V[xi, nu] (C_out, P)      alpha^2 batched GEMMs
    Y         = A^T M A per tile                      output transform

so a 3x3 convolution costs ``alpha^2`` multiplications per output tile and channel
pair instead of ``9 m^2``: 2.25x fewer for F(2x2, 3x3), 4x fewer for F(4x4, 3x3).

Backward. The forward is a linear function of ``W`` and of ``x`` computed exactly
(up to rounding) by the composition above, so its gradients are the adjoints of
each stage taken in reverse order::

    dM = A dY A^T per tile            (output-transform adjoint, ``winograd_output_adjoint``)
    dU[xi, nu] = dM[xi, nu] @ V[xi, nu]^T     dW = G^T dU G   (filter gradient)
    dV[xi, nu] = U[xi, nu]^T @ dM[xi, nu]     dx = B dV B^T per tile, overlapping tiles added

The input gradient is the same Winograd algorithm as Lavin & Gray's backward-data
pass (a convolution of dY with the 180-degree-rotated, channel-transposed filter),
written as the transpose of the forward, which needs no second padding rule and
shares ``dM`` with the filter gradient. The filter gradient re-uses the ``V`` the
forward computed, so it is Winograd too, with no im2col.

Layouts: ``U`` (alpha^2, C_out, C_in); ``V``, ``dV`` (alpha^2, C_in, P); ``M``, ``dM``
(alpha^2, C_out, P), tile ``p = (n * tiles_h + i) * tiles_w + j`` covering output
rows ``i*m .. i*m+m-1`` and columns ``j*m .. j*m+m-1`` (``tiles_h = ceil(H_out / m)``;
outputs past ``H_out`` are computed and dropped), reading input rows from
``i*m - padding`` (zeros outside the image).

Only 3x3 filters, stride 1; any padding (the plan uses it for padding 0 and 1).
"""
from __future__ import annotations

import numpy as np

from kernels.api import check_nchw, check_out

__all__ = ["TRANSFORMS", "transforms", "tile_counts", "winograd_filter_transform", "winograd_input_transform",
           "batched_gemm", "winograd_output_transform", "winograd_output_adjoint",
           "winograd_input_adjoint", "winograd_filter_adjoint", "winograd_conv2d"]

# Lavin & Gray (2016), Section 4.1, F(2x2, 3x3): interpolation points 0, 1, -1 and infinity.
_BT2 = [[1, 0, -1, 0],
        [0, 1, 1, 0],
        [0, -1, 1, 0],
        [0, 1, 0, -1]]
_G2 = [[1, 0, 0],
       [1 / 2, 1 / 2, 1 / 2],
       [1 / 2, -1 / 2, 1 / 2],
       [0, 0, 1]]
_AT2 = [[1, 1, 1, 0],
        [0, 1, -1, -1]]
# Lavin & Gray (2016), Section 4.2, F(4x4, 3x3): points 0, 1, -1, 2, -2 and infinity.
_BT4 = [[4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1]]
_G4 = [[1 / 4, 0, 0],
       [-1 / 6, -1 / 6, -1 / 6],
       [-1 / 6, 1 / 6, -1 / 6],
       [1 / 24, 1 / 12, 1 / 6],
       [1 / 24, -1 / 12, 1 / 6],
       [0, 0, 1]]
_AT4 = [[1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1]]

# m -> (B^T, G, A^T) in float64
TRANSFORMS = {2: tuple(np.array(t, np.float64) for t in (_BT2, _G2, _AT2)),
              4: tuple(np.array(t, np.float64) for t in (_BT4, _G4, _AT4))}


def transforms(m: int, dtype=np.float64):
    """``(B^T, G, A^T)`` of F(m x m, 3 x 3) in ``dtype``: shapes (alpha, alpha), (alpha, 3), (m, alpha).

    Raises
    ------
    ValueError
        If ``m`` is not 2 or 4.
    """
    if m not in TRANSFORMS:
        raise ValueError(f"Winograd tile size m must be one of {sorted(TRANSFORMS)}, got {m!r}")
    return tuple(t.astype(dtype) for t in TRANSFORMS[m])


def tile_counts(h_out: int, w_out: int, m: int) -> tuple[int, int]:
    """Tiles along H and W: ``(ceil(h_out / m), ceil(w_out / m))``."""
    return -(-h_out // m), -(-w_out // m)


def winograd_filter_transform(w, m, out=None):
    """``U = G g G^T`` for every filter: w (C_out, C_in, 3, 3) -> U (alpha^2, C_out, C_in), w's dtype.

    Raises
    ------
    ValueError
        If w is not (C_out, C_in, 3, 3), or ``out`` has the wrong shape or dtype.
    """
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"Winograd needs 3x3 filters (C_out, C_in, 3, 3), got shape {tuple(w.shape)}")
    _, g, _ = transforms(m, w.dtype)
    alpha = m + 2
    c_out, c_in = w.shape[:2]
    if out is None:
        out = np.empty((alpha * alpha, c_out, c_in), w.dtype)
    check_out(out, (alpha * alpha, c_out, c_in), w.dtype, "winograd_filter_transform out")
    u = np.einsum("ai,ocij,bj->aboc", g, w, g)  # (alpha, alpha, C_out, C_in)
    out[...] = u.reshape(alpha * alpha, c_out, c_in)
    return out


def _tiles(x, m, padding):
    """Overlapping alpha x alpha input tiles, a view (N, C, tiles_h, tiles_w, alpha, alpha), zero-padded."""
    n, c, h, w = check_nchw(x)
    h_out, w_out = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = tile_counts(h_out, w_out, m)
    alpha = m + 2
    padded = np.zeros((n, c, th * m + 2, tw * m + 2), x.dtype)
    rows, cols = min(h, th * m + 2 - padding), min(w, tw * m + 2 - padding)
    padded[:, :, padding:padding + rows, padding:padding + cols] = x[:, :, :rows, :cols]
    s = padded.strides
    return np.lib.stride_tricks.as_strided(
        padded, (n, c, th, tw, alpha, alpha), (s[0], s[1], m * s[2], m * s[3], s[2], s[3]), writeable=False)


def winograd_input_transform(x, m, padding, out=None):
    """``V = B^T d B`` for every input tile d: x (N, C, H, W) -> V (alpha^2, C, P), P = N*tiles_h*tiles_w.

    Tile (i, j) of image n reads input rows ``i*m - padding .. i*m - padding + alpha - 1``
    (columns likewise), zeros outside the image. Output size ``H_out = H + 2*padding - 2``.

    Raises
    ------
    ValueError
        If x is not 4-D, the output would be empty, or ``out`` has the wrong shape or dtype.
    """
    n, c, h, w = check_nchw(x)
    if h + 2 * padding < 3 or w + 2 * padding < 3:
        raise ValueError(f"a 3x3 filter with padding {padding} does not fit a {h}x{w} input")
    bt, _, _ = transforms(m, x.dtype)
    alpha = m + 2
    d = _tiles(x, m, padding)
    p = d.shape[0] * d.shape[2] * d.shape[3]
    if out is None:
        out = np.empty((alpha * alpha, c, p), x.dtype)
    check_out(out, (alpha * alpha, c, p), x.dtype, "winograd_input_transform out")
    v = np.einsum("ai,ncstij,bj->abcnst", bt, d, bt)  # (alpha, alpha, C, N, tiles_h, tiles_w)
    out[...] = v.reshape(alpha * alpha, c, p)
    return out


def batched_gemm(a, b, trans_a=False, trans_b=False, out=None):
    """``out[k] = op(a[k]) @ op(b[k])`` for every k: the element-wise stage, one GEMM per tile position.

    a : (B, M, K), or (B, K, M) with ``trans_a``; b : (B, K, N), or (B, N, K) with
    ``trans_b``; out : (B, M, N), a's dtype.

    Raises
    ------
    ValueError
        If the batch sizes or inner dimensions differ, or ``out`` has the wrong shape or dtype.
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(f"batched_gemm needs (B, ., .) operands with the same B, got {a.shape} and {b.shape}")
    opa = a.transpose(0, 2, 1) if trans_a else a
    opb = b.transpose(0, 2, 1) if trans_b else b
    if opa.shape[2] != opb.shape[1]:
        raise ValueError(f"batched_gemm: inner dimensions differ: op(a) {opa.shape[1:]}, op(b) {opb.shape[1:]}")
    shape = (a.shape[0], opa.shape[1], opb.shape[2])
    if out is None:
        out = np.empty(shape, a.dtype)
    check_out(out, shape, a.dtype, "batched_gemm out")
    np.matmul(opa, opb, out=out)
    return out


def winograd_output_transform(mt, bias, n, h_out, w_out, m, out=None):
    """``Y = A^T M A`` per tile plus the bias: M (alpha^2, C_out, P) -> y (N, C_out, H_out, W_out).

    ``bias`` : (C_out,). Raises ValueError if M's shape does not match the tiles of
    (n, h_out, w_out) or ``out`` has the wrong shape or dtype.
    """
    _, _, at = transforms(m, mt.dtype)
    alpha = m + 2
    th, tw = tile_counts(h_out, w_out, m)
    c_out = mt.shape[1]
    if mt.shape != (alpha * alpha, c_out, n * th * tw):
        raise ValueError(f"winograd_output_transform: M has shape {mt.shape}, expected "
                         f"{(alpha * alpha, c_out, n * th * tw)} for N={n}, {h_out}x{w_out} outputs, m={m}")
    if out is None:
        out = np.empty((n, c_out, h_out, w_out), mt.dtype)
    check_out(out, (n, c_out, h_out, w_out), mt.dtype, "winograd_output_transform out")
    tiles = mt.reshape(alpha, alpha, c_out, n, th, tw)
    y = np.einsum("ia,abcnst,jb->ncsitj", at, tiles, at)  # (N, C_out, tiles_h, m, tiles_w, m)
    y = y.reshape(n, c_out, th * m, tw * m)
    out[...] = y[:, :, :h_out, :w_out] + bias.reshape(1, c_out, 1, 1)
    return out


def winograd_output_adjoint(dout, m, out=None, db=None):
    """Adjoint of the output transform: ``dM = A dY A^T`` per tile; also the bias gradient.

    dout : (N, C_out, H_out, W_out) -> dM (alpha^2, C_out, P), zero-padded past the
    output's edge; ``db`` (C_out,) = dout summed over N, H, W. Returns ``(dM, db)``.
    """
    n, c_out, h_out, w_out = check_nchw(dout, "dout")
    _, _, at = transforms(m, dout.dtype)
    alpha = m + 2
    th, tw = tile_counts(h_out, w_out, m)
    if out is None:
        out = np.empty((alpha * alpha, c_out, n * th * tw), dout.dtype)
    if db is None:
        db = np.empty(c_out, dout.dtype)
    check_out(out, (alpha * alpha, c_out, n * th * tw), dout.dtype, "winograd_output_adjoint out")
    check_out(db, (c_out,), dout.dtype, "winograd_output_adjoint db")
    padded = np.zeros((n, c_out, th * m, tw * m), dout.dtype)
    padded[:, :, :h_out, :w_out] = dout
    dy = padded.reshape(n, c_out, th, m, tw, m)
    dm = np.einsum("ia,ncsitj,jb->abcnst", at, dy, at)
    out[...] = dm.reshape(alpha * alpha, c_out, n * th * tw)
    db[...] = dout.sum(axis=(0, 2, 3), dtype=np.float64)
    return out, db


def winograd_input_adjoint(dv, x_shape, m, padding, out=None):
    """Adjoint of the input transform: ``dd = B dV B^T`` per tile, overlapping tiles added into dx.

    dv : (alpha^2, C, P) -> dx with shape ``x_shape`` (N, C, H, W); padding dropped.
    """
    n, c, h, w = (int(s) for s in x_shape)
    bt, _, _ = transforms(m, dv.dtype)
    alpha = m + 2
    th, tw = tile_counts(h + 2 * padding - 2, w + 2 * padding - 2, m)
    if dv.shape != (alpha * alpha, c, n * th * tw):
        raise ValueError(f"winograd_input_adjoint: dV has shape {dv.shape}, expected {(alpha * alpha, c, n * th * tw)}")
    if out is None:
        out = np.empty((n, c, h, w), dv.dtype)
    check_out(out, (n, c, h, w), dv.dtype, "winograd_input_adjoint out")
    dd = np.einsum("ai,abcnst,bj->ncstij", bt, dv.reshape(alpha, alpha, c, n, th, tw), bt)
    padded = np.zeros((n, c, th * m + 2, tw * m + 2), dv.dtype)
    for i in range(alpha):  # tiles overlap by 2 rows and columns: add each tile offset in turn
        for j in range(alpha):
            padded[:, :, i:i + th * m:m, j:j + tw * m:m] += dd[:, :, :, :, i, j]
    rows, cols = min(h, th * m + 2 - padding), min(w, tw * m + 2 - padding)
    out[...] = 0
    out[:, :, :rows, :cols] = padded[:, :, padding:padding + rows, padding:padding + cols]
    return out


def winograd_filter_adjoint(du, m, out=None):
    """Adjoint of the filter transform: ``dW = G^T dU G``: dU (alpha^2, C_out, C_in) -> dW (C_out, C_in, 3, 3)."""
    _, g, _ = transforms(m, du.dtype)
    alpha = m + 2
    c_out, c_in = du.shape[1:]
    if out is None:
        out = np.empty((c_out, c_in, 3, 3), du.dtype)
    check_out(out, (c_out, c_in, 3, 3), du.dtype, "winograd_filter_adjoint out")
    out[...] = np.einsum("ai,aboc,bj->ocij", g, du.reshape(alpha, alpha, c_out, c_in), g)
    return out


def winograd_conv2d(x, w, bias, padding, m):
    """The whole forward, for tests and teaching: x (N, C_in, H, W), w (C_out, C_in, 3, 3) -> y."""
    n, _, h, wd = check_nchw(x)
    h_out, w_out = h + 2 * padding - 2, wd + 2 * padding - 2
    u = winograd_filter_transform(w, m)
    v = winograd_input_transform(x, m, padding)
    return winograd_output_transform(batched_gemm(u, v), bias, n, h_out, w_out, m)
