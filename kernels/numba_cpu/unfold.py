"""The CPU backend's one unfold (im2col) and fold (col2im), per image plane or per image.

``unfold_plane``/``fold_plane``: one (H, W) plane's rows of the columns, any stride and
padding, zeros written where a window overlaps the border; ``conv.im2col``/``col2im``
run them on every plane of a batch, and ``conv_bn`` on one image's planes when the
stride is not 1.

Stride 1 (``conv_bn``, per image): the image's channels are copied into a
zero-padded buffer ``padded`` of shape ``(C, Hp*Wp + kw)`` (``Hp = H + 2*padding``,
``Wp = W + 2*padding``; each channel flattened, with ``kw`` spare elements), so
that no copy loop tests bounds, and the columns are laid out on the padded width: the output grid is
``H_out x Wp`` instead of ``H_out x W_out``, whose last ``Wp - W_out = kw - 1``
columns of each row are junk that the caller drops. Then the row ``(c, i, j)`` of
the columns is one contiguous slice, ``padded[c, i*Wp + j:][:H_out*Wp]``: im2col is
``C*kh*kw`` block copies and col2im ``C*kh*kw`` block additions, which vectorise,
for ``(kw - 1)/Wp`` more GEMM columns (7% at 28x28 with padding 1, 12% at 14x14).
This is the "shifted" layout of implicit-GEMM convolutions (e.g. Chetlur et al.,
2014, "cuDNN: Efficient Primitives for Deep Learning", Section 3).
"""
from __future__ import annotations

from numba import njit

__all__ = ["unfold_plane", "fold_plane", "pad_image", "unpad_image", "unfold_shifted", "fold_shifted"]


@njit(cache=True, inline="always")
def _valid_range(out_size, size, offset, stride, padding):
    """Output positions o whose input position o*stride + offset - padding lies in [0, size)."""
    lo = min(out_size, max(0, (padding - offset + stride - 1) // stride))
    hi = max(lo, min(out_size, (size - 1 + padding - offset) // stride + 1))
    return lo, hi


@njit(cache=True, inline="always")
def unfold_plane(plane, kh, kw, stride, padding, h_out, w_out, cols, row0, col0):
    """im2col of one (H, W) input plane: rows ``row0 .. row0 + kh*kw`` of ``cols``, columns ``col0 ..``.

    One input plane's share of ``im2col``, so that each parallel task writes only its own rows.
    """
    h, w = plane.shape
    p = h_out * w_out
    for i in range(kh):
        for j in range(kw):
            row = cols[row0 + i * kw + j, col0:col0 + p]
            lo, hi = _valid_range(w_out, w, j, stride, padding)
            first = lo * stride + j - padding  # input column read by output column lo
            for oh in range(h_out):
                dst = row[oh * w_out:(oh + 1) * w_out]
                ih = oh * stride + i - padding
                if ih < 0 or ih >= h:
                    dst[:] = 0
                    continue
                dst[:lo] = 0
                dst[hi:] = 0
                # Slices start at 0, so the copy loop has no negative index and vectorises.
                # (One assignment per view: a tuple of views made this kernel 50% slower.)
                src = plane[ih, first:]
                inner = dst[lo:hi]
                if stride == 1:
                    for q in range(hi - lo):
                        inner[q] = src[q]
                else:
                    for q in range(hi - lo):
                        inner[q] = src[q * stride]


@njit(cache=True, inline="always")
def fold_plane(cols, kh, kw, stride, padding, h_out, w_out, plane, row0, col0):
    """col2im of one (H, W) plane: zero it, then add rows ``row0 .. row0 + kh*kw`` of ``cols`` (columns ``col0 ..``)."""
    h, w = plane.shape
    p = h_out * w_out
    plane[:, :] = 0
    for i in range(kh):
        for j in range(kw):
            row = cols[row0 + i * kw + j, col0:col0 + p]
            lo, hi = _valid_range(w_out, w, j, stride, padding)
            first = lo * stride + j - padding
            for oh in range(h_out):
                ih = oh * stride + i - padding
                if ih < 0 or ih >= h:
                    continue
                src = row[oh * w_out + lo:oh * w_out + hi]
                dst = plane[ih, first:]
                if stride == 1:
                    for q in range(hi - lo):
                        dst[q] += src[q]
                else:
                    for q in range(hi - lo):
                        dst[q * stride] += src[q]


@njit(cache=True, inline="always")
def pad_image(image, padding, wp, padded):
    """Zero ``padded`` (C, Hp*Wp + spare) and copy ``image`` (C, H, W) inside its border."""
    c, h, w = image.shape
    padded[:, :] = 0
    for ch in range(c):
        for r in range(h):
            dst, src = padded[ch, (r + padding) * wp + padding:], image[ch, r]
            for q in range(w):
                dst[q] = src[q]


@njit(cache=True, inline="always")
def unpad_image(padded, padding, wp, image):
    """The inside of ``padded`` into ``image`` (C, H, W): the inverse of ``pad_image``'s copy."""
    c, h, w = image.shape
    for ch in range(c):
        for r in range(h):
            dst, src = image[ch, r], padded[ch, (r + padding) * wp + padding:]
            for q in range(w):
                dst[q] = src[q]


@njit(cache=True, inline="always")
def unfold_shifted(padded, kh, kw, wp, length, cols):
    """Stride 1: row ``(c, i, j)`` of ``cols`` is ``padded[c, i*wp + j:][:length]``, ``length = H_out*wp``."""
    for ch in range(padded.shape[0]):
        for i in range(kh):
            for j in range(kw):
                src, dst = padded[ch, i * wp + j:], cols[(ch * kh + i) * kw + j]
                for q in range(length):
                    dst[q] = src[q]


@njit(cache=True, inline="always")
def fold_shifted(cols, kh, kw, wp, length, padded):
    """The adjoint of ``unfold_shifted``: add each row of ``cols`` back where it came from (``padded`` zeroed)."""
    padded[:, :] = 0
    for ch in range(padded.shape[0]):
        for i in range(kh):
            for j in range(kw):
                src, dst = cols[(ch * kh + i) * kw + j], padded[ch, i * wp + j:]
                for q in range(length):
                    dst[q] += src[q]
