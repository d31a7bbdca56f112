"""Winograd convolution F(2x2, 3x3) and F(4x4, 3x3): reference vs definition, adjoints, CPU vs reference,
float32 error bounds, and float64 gradient checks of whole networks through the Winograd plan step."""
from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels.numpy_ref import winograd as R
from scratchcnn.nn.gradcheck import numerical_grad, rel_error
from scratchcnn.nn.layers import BatchNorm2D, Conv2D, Dense, Flatten, ReLU
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.plan import WinogradConv, tile_size
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_kernels_match_the_reference(dtype, m, shape, rng):
    K = kernels.get("cpu")
    n, c, f, h, w, pad = shape
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-11, 1e-12)

    def close(got, want):
        # Absolute tolerance relative to the largest entry: the GEMM stage sums many terms of the size
        # of the transforms' entries, and two BLAS libraries round such sums differently.
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)

    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    h_out, w_out = h + 2 * pad - 2, w + 2 * pad - 2
    u = R.winograd_filter_transform(wt, m)
    close(K.winograd_filter_transform(wt, m), u)
    v = R.winograd_input_transform(x, m, pad)
    close(K.winograd_input_transform(x, m, pad), v)
    mt = R.batched_gemm(u, v)
    close(K.batched_gemm(u, v), mt)
    close(K.winograd_output_transform(mt, b, n, h_out, w_out, m),
          R.winograd_output_transform(mt, b, n, h_out, w_out, m))
    dy = rng.standard_normal((n, f, h_out, w_out)).astype(dtype)
    dm, db = R.winograd_output_adjoint(dy, m)
    got_dm, got_db = K.winograd_output_adjoint(dy, m)
    close(got_dm, dm)
    close(got_db, db)
    close(K.batched_gemm(dm, v, trans_b=True), R.batched_gemm(dm, v, trans_b=True))
    close(K.batched_gemm(u, dm, trans_a=True), R.batched_gemm(u, dm, trans_a=True))
    dv = rng.standard_normal(v.shape).astype(dtype)
    close(K.winograd_input_adjoint(dv, x.shape, m, pad), R.winograd_input_adjoint(dv, x.shape, m, pad))
    du = rng.standard_normal(u.shape).astype(dtype)
    close(K.winograd_filter_adjoint(du, m), R.winograd_filter_adjoint(du, m))


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
    K = kernels.get("cpu")
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
            u = K.winograd_filter_transform(w32, algorithm)
            mt = K.batched_gemm(u, K.winograd_input_transform(x32, algorithm, 1))
            y = K.winograd_output_transform(mt, np.zeros(f, np.float32), 4, hw, hw, algorithm)
        worst = max(worst, float(np.abs(y - exact).max() / np.abs(exact).max()))
    assert worst < FLOAT32_BOUND[algorithm], f"{algorithm}: relative error {worst:.2e}"


def test_tile_rule():
    conv = Conv2D(32, 64, 3, padding=1)
    assert tile_size(conv, 28, 28) == 4 and tile_size(conv, 14, 14) == 4
    assert tile_size(conv, 6, 6) == 2  # 6x6 outputs in 4x4 tiles: 64 computed for 36 kept
    assert tile_size(Conv2D(1, 32, 3, padding=1), 28, 28) is None  # one input channel: im2col
    assert tile_size(Conv2D(32, 32, 3, stride=2), 28, 28) is None
    assert tile_size(Conv2D(32, 32, 5, padding=2), 28, 28) is None
    assert tile_size(Conv2D(32, 32, 3, padding=2), 28, 28) is None


def _network(backend, padding, dtype=np.float64):
    # No bias before BN (its gradient is exactly 0, nothing to check); the second convolution has one.
    layers = [Conv2D(8, 6, 3, padding=padding, bias=False), BatchNorm2D(6), ReLU(),
              Conv2D(6, 3, 3, padding=padding, bias=True), ReLU(), Flatten()]
    side = 7 + 2 * (2 * padding - 2)
    layers.append(Dense(3 * side * side, 5))
    model = Sequential(layers, input_shape=(8, 7, 7), seed=3, backend=backend, fuse=True)
    return model.to(model.K, dtype)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("padding", [0, 1])
def test_network_gradients_through_winograd_in_float64(backend, padding, rng, monkeypatch):
    import scratchcnn.nn.plan as W

    monkeypatch.setenv("SCRATCHCNN_WINOGRAD", "1")
    model = _network(backend, padding)
    steps = [s for s in model.plan if isinstance(s, WinogradConv)]
    assert len(steps) == 1 and steps[0].layers == (model.layers[0],)  # the second conv has 6 < 8 input channels
    monkeypatch.setattr(W, "MIN_IN_CHANNELS", 1)
    model.to(model.K, np.float64)  # re-plan: both convolutions by Winograd
    assert sum(isinstance(s, WinogradConv) for s in model.plan) == 2
    # Both tile sizes: the first convolution by F(2x2), the second by F(4x4).
    monkeypatch.setattr(W, "tile_size", lambda conv, h, w: 2 if conv is model.layers[0] else 4)
    model.requires_input_grad = True
    loss = SoftmaxCrossEntropy()
    loss.K = model.K
    x = rng.standard_normal((3, 8, 7, 7))
    y = np.array([0, 3, 4])

    def total():
        return loss(model.forward(model.K.asarray(x), training=True), y)

    total()
    dx = np.array(model.K.to_numpy(model.backward(loss.backward())))
    analytic = {key: np.array(model.K.to_numpy(g)) for key, _, g in model.parameters()}
    if backend == "numpy":  # every coordinate
        assert rel_error(dx, numerical_grad(total, x, np.ones(()))) < 1e-6
        for key, param, _ in model.parameters():
            assert rel_error(analytic[key], numerical_grad(total, param, np.ones(()))) < 1e-6, key
        return
    # cpu: 8 random coordinates of the input and of each parameter (each probe is two forward passes)
    for name, array, grad in [("x", x, dx)] + [(k, p, analytic[k]) for k, p, _ in model.parameters()]:
        for flat in rng.choice(array.size, size=min(8, array.size), replace=False):
            idx = np.unravel_index(flat, array.shape)
            old = array[idx]
            array[idx] = old + 1e-5
            plus = total()
            array[idx] = old - 1e-5
            minus = total()
            array[idx] = old
            numeric = (plus - minus) / 2e-5
            # central differences in float64 are good to ~1e-10 here; a wrong gradient is off by its own size
            assert abs(numeric - grad[idx]) <= 1e-8 + 1e-5 * abs(numeric), (name, idx, numeric, grad[idx])


def test_winograd_plan_gives_the_im2col_function(rng, monkeypatch):
    x = rng.standard_normal((4, 8, 7, 7)).astype(np.float32)
    plain = _network("cpu", 1, np.float32)
    assert not any(isinstance(s, WinogradConv) for s in plain.plan)  # off unless asked for
    monkeypatch.setenv("SCRATCHCNN_WINOGRAD", "1")
    fast = _network("cpu", 1, np.float32)
    assert any(isinstance(s, WinogradConv) for s in fast.plan)
    np.testing.assert_allclose(fast.forward(x, training=False), plain.forward(x, training=False),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_folded_batchnorm_gives_the_same_logits(backend, rng):
    from scratchcnn.nn.folding import fold_batchnorm
    from scratchcnn.nn.optimizers import Adam
    from scratchcnn.nn.presets import build_model

    model = build_model("vgg-small", (1, 28, 28), 10, seed=0, backend=backend)
    model.compile(Adam(1e-2), SoftmaxCrossEntropy())
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    for _ in range(3):  # move gamma, beta and the running statistics away from 1 and 0
        model.train_step(model.K.asarray(x), model.K.asarray(y))
    folded = fold_batchnorm(model)
    assert [type(layer).__name__ for layer in folded.layers].count("BatchNorm2D") == 0
    assert len(folded.layers) == len(model.layers) - 5
    want = np.array(model.K.to_numpy(model.forward(model.K.asarray(x), training=False)))
    got = np.array(folded.K.to_numpy(folded.forward(folded.K.asarray(x), training=False)))
    # float32 rounding of the folded weights and of a different summation order: a few ulps of the logits
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
