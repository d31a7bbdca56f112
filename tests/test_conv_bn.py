"""Conv2D -> BatchNorm2D -> ReLU (-> MaxPool2D) fused: kernels against the reference, gradients in float64."""
from __future__ import annotations

import numba
import numpy as np
import pytest

import kernels
from kernels import numpy_ref as R
from scratchcnn.nn.gradcheck import numerical_grad, rel_error
from scratchcnn.nn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.plan import ConvBNReLU
from tests.conftest import host_backends

COMPILED = [b for b in host_backends() if b != "numpy" and kernels.get(b).CONV_BN]

SHAPES = [  # (N, C, H, W, F, k, stride, padding): batch below and above CHUNKS, stride 2, 1x1, padding 2
    # stride 2 in groups of 2 images (GROUP_COLUMNS): the last group of the forward and of some runs is short
    (19, 2, 27, 27, 3, 3, 2, 1),
    (3, 2, 7, 6, 4, 3, 1, 1),
    (11, 3, 9, 9, 5, 3, 2, 1),
    (2, 4, 6, 5, 3, 1, 1, 0),
    (9, 1, 8, 8, 6, 3, 1, 0),
    (1, 2, 5, 5, 2, 3, 1, 2),
]


def _close(got, want, dtype, scale=1.0):
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=tol, atol=tol * max(1.0, scale))


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_convolution_kernels_match_the_reference(backend, dtype, shape, rng):
    K = kernels.get(backend)
    n, c, h, w, f, k, stride, padding = shape
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weights = rng.standard_normal((f, c, k, k)).astype(dtype)
    scale, shift = rng.standard_normal(f).astype(dtype), rng.standard_normal(f).astype(dtype)
    for relu in (False, True):
        want_stats, got_stats = np.empty((2, f)), np.full((2, f), np.nan)
        want, _ = R.conv2d_affine_forward(x, weights, scale, shift, relu, stride, padding, stats=want_stats)
        got, _ = K.conv2d_affine_forward(x, weights, scale, shift, relu, stride, padding, stats=got_stats)
        _close(got, want, dtype, np.abs(want).max())
        _close(got_stats, want_stats, dtype, np.abs(want_stats).max())
    g, z = rng.standard_normal(want.shape).astype(dtype), rng.standard_normal(want.shape).astype(dtype)
    g_scale, z_scale, bias = (rng.standard_normal(f).astype(dtype) for _ in range(3))
    dw_want, dx_want = R.conv2d_affine_backward(g, z, g_scale, z_scale, bias, x, weights, stride, padding)
    # NaN-filled outputs: a kernel that leaves an element unwritten fails
    dw, dx = np.full_like(weights, np.nan), np.full_like(x, np.nan)
    K.conv2d_affine_backward(g, z, g_scale, z_scale, bias, x, weights, stride, padding, True, dw=dw, dx=dx)
    _close(dw, dw_want, dtype, np.abs(dw_want).max())
    _close(dx, dx_want, dtype, np.abs(dx_want).max())
    dw_only, none = K.conv2d_affine_backward(g, z, g_scale, z_scale, bias, x, weights, stride, padding, False)
    assert none is None
    np.testing.assert_array_equal(dw_only, dw)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", [None, (2, 2), (3, 2), (2, 1)])
def test_bn_relu_kernels_match_the_reference(backend, dtype, pool, rng):
    K = kernels.get(backend)
    z = rng.standard_normal((5, 3, 8, 7)).astype(dtype)
    scale = np.array([1.5, -0.7, 0.0], dtype)  # a negative and a zero scale: the max moves, or ties
    shift = rng.standard_normal(3).astype(dtype)
    mean, inv_std = rng.standard_normal(3).astype(dtype), (rng.random(3) + 0.5).astype(dtype)
    if pool is None:
        out = K.bn_relu_forward(z, scale, shift)
        np.testing.assert_array_equal(out, R.bn_relu_forward(z, scale, shift))
        dout = rng.standard_normal(out.shape).astype(dtype)
        want = R.bn_relu_backward(dout, out, z, mean, inv_std)
        got = K.bn_relu_backward(dout, out, z, mean, inv_std, g=np.full_like(z, np.nan),
                                 sums=np.full((2, 3), np.nan))
    else:
        k, stride = pool
        out, argmax = K.bn_relu_pool_forward(z, scale, shift, k, stride)
        out_ref, argmax_ref = R.bn_relu_pool_forward(z, scale, shift, k, stride)
        np.testing.assert_array_equal(out, out_ref)
        np.testing.assert_array_equal(argmax, argmax_ref)  # ties go to the first position in both
        dout = rng.standard_normal(out.shape).astype(dtype)
        want = R.bn_relu_pool_backward(dout, argmax, out, z, mean, inv_std, k, stride)
        got = K.bn_relu_pool_backward(dout, argmax, out, z, mean, inv_std, k, stride,
                                      g=np.full_like(z, np.nan), sums=np.full((2, 3), np.nan))
    _close(got[0], want[0], dtype)
    _close(got[1], want[1], dtype, np.abs(want[1]).max())


@pytest.mark.parametrize("backend", COMPILED)
def test_weight_gradient_does_not_depend_on_the_thread_count(backend, rng):
    """Partial sums over fixed runs of images (CHUNKS), added in order: bit-identical with 1 or all threads."""
    K = kernels.get(backend)
    x = rng.standard_normal((13, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    g, z = rng.standard_normal((2, 13, 6, 9, 9)).astype(np.float32)
    ones, zeros = np.ones(6, np.float32), np.zeros(6, np.float32)
    results = []
    threads = numba.get_num_threads()
    for count in sorted({1, threads}):
        numba.set_num_threads(count)
        try:
            results.append(K.conv2d_affine_backward(g, z, ones, zeros, zeros, x, w, 1, 1, True))
        finally:
            numba.set_num_threads(threads)
    for dw, dx in results[1:]:
        np.testing.assert_array_equal(dw, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])


def _network(backend, dtype, bias, fuse=True):
    layers = [Conv2D(2, 4, 3, padding=1, bias=bias), BatchNorm2D(4), ReLU(),
              Conv2D(4, 5, 3, stride=1, padding=0, bias=bias), BatchNorm2D(5), ReLU(), MaxPool2D(2),
              Flatten(), Dense(5 * 2 * 2, 3)]
    model = Sequential(layers, seed=4, fuse=fuse)
    return model.build((2, 6, 6), backend=backend, dtype=dtype)


def analytic_and_numerical_gradients(model, x, y):
    """One training-mode forward and backward of ``model`` (float64) with the mean cross-entropy, and
    the same gradients by central differences: ``(dx, numeric dx, [(key, grad, numeric grad), ...])``."""
    model.requires_input_grad = True
    loss = SoftmaxCrossEntropy()
    loss.K = model.K

    def total():
        return loss(model.forward(model.K.asarray(x), training=True), y)

    total()
    dx = np.array(model.K.to_numpy(model.backward(loss.backward())))
    grads = [(key, np.array(model.K.to_numpy(grad)), None) for key, _, grad in model.parameters()]
    params = {key: param for key, param, _ in model.parameters()}
    numeric_dx = numerical_grad(total, x, np.ones(()))
    return dx, numeric_dx, [(key, grad, numerical_grad(total, params[key], np.ones(()))) for key, grad, _ in grads]


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
@pytest.mark.parametrize("bias", [False, True])
def test_network_gradients_through_the_fused_block_in_float64(backend, bias, rng):
    """Every parameter's and the input's gradient against central differences, through both fused steps.

    With ``bias`` the convolution's bias gradient is checked too: BN cancels a bias, so it is zero,
    and the fused step computes it from the sums it already has."""
    model = _network(backend, np.float64, bias)
    assert [type(s).__name__ for s in model.plan][:2] == ["ConvBNReLU", "ConvBNReLU"]
    x = rng.standard_normal((4, 2, 6, 6))
    dx, numeric_dx, grads = analytic_and_numerical_gradients(model, x, np.array([0, 2, 1, 2]))
    assert rel_error(dx, numeric_dx) < 1e-6
    for key, grad, numeric in grads:
        if key.endswith(".b") and key.startswith("conv2d"):
            np.testing.assert_allclose(grad, 0, atol=1e-9)
            np.testing.assert_allclose(numeric, 0, atol=1e-7)
            continue
        assert rel_error(grad, numeric) < 1e-6, key


@pytest.mark.parametrize("backend", COMPILED)
def test_inference_folds_the_running_statistics_into_the_convolution(backend, rng):
    """After training steps (non-trivial running statistics) the fused inference path gives the unfused logits."""
    from scratchcnn.nn.optimizers import SGD

    fused, plain = _network(backend, np.float32, True), _network(backend, np.float32, True, fuse=False)
    assert not any(isinstance(s, ConvBNReLU) for s in plain.plan)
    batches = [rng.standard_normal((8, 2, 6, 6)).astype(np.float32) + step for step in range(3)]
    for model in (fused, plain):
        model.compile(SGD(0.1), SoftmaxCrossEntropy())
        for batch in batches:
            model.train_step(batch, np.arange(8) % 3)
    bn = fused.layers[1]
    assert not np.allclose(bn.buffers["running_var"], 1.0)  # statistics moved
    x = rng.standard_normal((7, 2, 6, 6)).astype(np.float32)
    want = plain.forward(x, training=False)
    np.testing.assert_allclose(fused.forward(x, training=False), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    with pytest.raises(RuntimeError, match="training-mode forward"):
        fused.backward(np.ones((7, 3), np.float32))
