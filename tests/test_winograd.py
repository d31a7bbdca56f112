"""Winograd convolution F(2x2, 3x3) and F(4x4, 3x3) in the NumPy reference (notebook 8; no backend runs
it): reference vs definition, transform matrices, adjoints, float32 error bounds."""
from __future__ import annotations

import numpy as np
import pytest

from kernels import numpy_ref
from kernels.numpy_ref import winograd as R
from tests.oracles import conv2d_naive

# (N, C_in, C_out, H, W, padding): odd sizes leave partial tiles at the bottom and right edges.
SHAPES = [(2, 3, 4, 7, 9, 0), (2, 3, 4, 7, 9, 1), (1, 2, 3, 4, 4, 1), (3, 5, 2, 3, 3, 0), (2, 8, 6, 14, 14, 1)]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_equals_the_definition_of_convolution(m, shape, rng):
    n, c, f, h, w, pad = shape
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, 3, 3)), rng.standard_normal(f)
    np.testing.assert_allclose(R.winograd_conv2d(x, wt, b, pad, m), conv2d_naive(x, wt, b, 1, pad),
                               rtol=1e-10, atol=1e-10)


def test_transform_matrices_are_lavin_and_grays():
    # F(2,3) on a 1-D signal: y = A^T [(G g) * (B^T d)] equals the correlation of d with g.
    bt, g, at = R.transforms(2)
    d, k = np.array([1.0, 2.0, -1.0, 3.0]), np.array([0.5, -2.0, 1.0])
    np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), [d[0:3] @ k, d[1:4] @ k])
    bt, g, at = R.transforms(4)
    d = np.arange(6.0) ** 2
    np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), [d[i:i + 3] @ k for i in range(4)], atol=1e-12)
    with pytest.raises(ValueError, match="must be one of"):
        R.transforms(3)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", SHAPES[:3])
def test_backward_stages_are_the_adjoints_of_the_forward_stages(m, shape, rng):
    # <T a, b> == <a, T* b> for each linear stage: what makes the gradients exact.
    n, c, f, h, w, pad = shape
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, 3, 3))
    v = R.winograd_input_transform(x, m, pad)
    dv = rng.standard_normal(v.shape)
    assert np.sum(v * dv) == pytest.approx(np.sum(x * R.winograd_input_adjoint(dv, x.shape, m, pad)), rel=1e-10)
    u = R.winograd_filter_transform(wt, m)
    du = rng.standard_normal(u.shape)
    assert np.sum(u * du) == pytest.approx(np.sum(wt * R.winograd_filter_adjoint(du, m)), rel=1e-10)
    h_out, w_out = h + 2 * pad - 2, w + 2 * pad - 2
    mt = rng.standard_normal((u.shape[0], f, v.shape[2]))
    dy = rng.standard_normal((n, f, h_out, w_out))
    y = R.winograd_output_transform(mt, np.zeros(f), n, h_out, w_out, m)
    dm, db = R.winograd_output_adjoint(dy, m)
    assert np.sum(y * dy) == pytest.approx(np.sum(mt * dm), rel=1e-10)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)))


# Measured 2026-11-30 on vgg-small's layer shapes (the test below), worst error of the float32 output
# against float64 direct convolution, relative to the output's largest entry: im2col + GEMM 8.2e-7,
# F(2x2) 3.1e-7, F(4x4) 5.1e-6 (its transforms hold 4, 5 and 8, which amplify rounding; Lavin & Gray,
# Section 5). The bounds leave a factor of about 4 over those figures.
FLOAT32_BOUND = {"gemm": 3e-6, 2: 1.5e-6, 4: 2e-5}


def _direct_conv3x3(x, w):
    """Padding-1 cross-correlation in float64, one einsum per filter offset (the definition, vectorised)."""
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return sum(np.einsum("nchw,fc->nfhw", xp[:, :, p:p + h, q:q + wd], w[:, :, p, q])
               for p in range(3) for q in range(3))


@pytest.mark.parametrize("algorithm", ["gemm", 2, 4])
def test_float32_error_against_direct_convolution(algorithm, rng):
    K = numpy_ref
    worst = 0.0
    for c, f, hw in ((32, 32, 28), (32, 64, 14), (64, 64, 14)):  # vgg-small's Winograd layers, batch 4
        x = rng.standard_normal((4, c, hw, hw))
        wt = rng.standard_normal((f, c, 3, 3)) * np.sqrt(2.0 / (9 * c))  # He-scaled filters
        exact = _direct_conv3x3(x, wt)
        x32, w32 = x.astype(np.float32), wt.astype(np.float32)
        if algorithm == "gemm":
            cols = K.im2col(x32, 3, 3, 1, 1)
            y = K.gemm(w32.reshape(f, -1), cols).reshape(f, 4, hw, hw).transpose(1, 0, 2, 3)
        else:
            u = R.winograd_filter_transform(w32, algorithm)
            mt = R.batched_gemm(u, R.winograd_input_transform(x32, algorithm, 1))
            y = R.winograd_output_transform(mt, np.zeros(f, np.float32), 4, hw, hw, algorithm)
        worst = max(worst, float(np.abs(y - exact).max() / np.abs(exact).max()))
    assert worst < FLOAT32_BOUND[algorithm], f"{algorithm}: relative error {worst:.2e}"
