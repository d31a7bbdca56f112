"""Every CUDA kernel against the NumPy reference, on tiny shapes (a GPU, or Numba's simulator).

The simulator runs each GPU thread as a Python thread, so every launch here
stays at a few blocks of 256 threads. Exact equality where the kernel only
copies or compares (im2col, pooling, argmax, ReLU, dropout masks); float32
tolerance where it sums in another order.
"""
from __future__ import annotations

import numpy as np
import pytest

from kernels import numpy_ref as R
from kernels.api import KERNELS, conv_output_size
from tests.cudasim.conftest import cuda_problem

if cuda_problem():
    pytest.skip(cuda_problem(), allow_module_level=True)

from kernels.numba_cuda import launch as _launch  # noqa: E402
from kernels import numba_cuda as C  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def close(got, want, **kw):
    np.testing.assert_allclose(C.to_numpy(got), want, **({"rtol": RTOL, "atol": ATOL} | kw))


def exact(got, want):
    np.testing.assert_array_equal(C.to_numpy(got), want)


def dev(a):
    return C.asarray(a)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def test_module_defines_the_kernel_contract():
    assert C.name == "cuda"
    assert sorted(C.__all__) == sorted(KERNELS)


def test_memory_functions_stay_on_the_device_until_asked(rng):
    host = rng.standard_normal((3, 4)).astype(np.float32)
    d = C.asarray(host)
    assert not isinstance(d, np.ndarray) and d.shape == (3, 4) and d.dtype == np.float32
    assert C.asarray(d) is d  # no copy when already there
    exact(d, host)
    exact(C.asarray(d, np.float64), host.astype(np.float64))
    z = C.zeros((5, 7), np.int8)
    assert z.dtype == np.int8
    exact(z, np.zeros((5, 7), np.int8))
    exact(C.zeros(3, np.int64), np.zeros(3, np.int64))  # the labels of Sequential.warm_up on a GPU
    assert C.empty((2, 3), np.float64).shape == (2, 3)
    C.synchronize()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(20, 30, 40), (70, 17, 5)])
def test_gemm_with_every_transpose(dtype, m, k, n, rng):
    """Edge tiles (70 rows: two row tiles, the second mostly padding) and K not a multiple of 16."""
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    want = a @ b
    for ta in (False, True):
        for tb in (False, True):
            got = C.gemm(dev(np.ascontiguousarray(a.T) if ta else a),
                         dev(np.ascontiguousarray(b.T) if tb else b), ta, tb)
            close(got, want, err_msg=f"trans_a={ta} trans_b={tb}")


def test_gemm_split_k_sums_the_partial_products(rng, monkeypatch):
    """A weight-gradient shape (few outputs, long K) takes the split-K path and still gives op(a) @ op(b)."""
    monkeypatch.setattr(_launch, "MIN_SPLIT_K", 32)
    monkeypatch.setattr(_launch, "sm_count", lambda: 4)
    assert _launch.gemm_splits(5, 3, 100, 64, 64, 16) == (3, 48)  # chunks [0,48) [48,96) [96,100)
    a = rng.standard_normal((5, 100)).astype(np.float32)
    b = rng.standard_normal((3, 100)).astype(np.float32)
    out = C.zeros((15,), np.float32).reshape(5, 3)  # a view, as Conv2D passes grads["W"].reshape
    C.gemm(dev(a), dev(b), trans_b=True, out=out)
    close(out, a @ b.T)


def test_gemm_rejects_mismatched_operands():
    with pytest.raises(ValueError, match="inner dimensions"):
        C.gemm(C.zeros((2, 3)), C.zeros((4, 5)))
    with pytest.raises(ValueError, match="dtypes"):
        C.gemm(C.zeros((2, 3)), C.zeros((3, 2), np.float64))
    with pytest.raises(ValueError, match="gemm out"):
        C.gemm(C.zeros((2, 3)), C.zeros((3, 2)), out=C.zeros((3, 3)))


@pytest.mark.parametrize("shape", [
    (2, 3, 5, 5, 3, 3, 1, 0),
    (1, 1, 7, 6, 3, 3, 2, 1),
    (3, 2, 9, 8, 2, 3, 2, 1),
    (1, 2, 4, 4, 3, 3, 1, 2),
    (2, 3, 5, 6, 1, 1, 2, 0),  # a ResNet projection shortcut: 1x1, stride 2
])
def test_im2col_col2im_and_the_conv_bias(shape, rng):
    n, c, h, w, kh, kw, s, p = shape
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    cols = R.im2col(x, kh, kw, s, p)
    exact(C.im2col(dev(x), kh, kw, s, p), cols)  # a pure copy: exact
    dcols = rng.standard_normal(cols.shape).astype(np.float32)
    close(C.col2im(dev(dcols), x.shape, kh, kw, s, p), R.col2im(dcols, x.shape, kh, kw, s, p))
    f = 3
    y = rng.standard_normal((f, cols.shape[1])).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    exact(C.bias_add_nchw(dev(y), dev(b), n), R.bias_add_nchw(y, b, n))
    ho, wo = conv_output_size(h, kh, s, p), conv_output_size(w, kw, s, p)
    dout = rng.standard_normal((n, f, ho, wo)).astype(np.float32)
    db, dout_cm = C.bias_grad_nchw(dev(dout))
    want_db, want_cm = R.bias_grad_nchw(dout)
    close(db, want_db)
    exact(dout_cm, want_cm)


def test_col2im_in_float64_for_gradient_checks(rng):
    x_shape = (2, 2, 5, 4)
    dcols = rng.standard_normal((2 * 9, 2 * 3 * 2))
    got = C.col2im(dev(dcols), x_shape, 3, 3, 1, 0)
    assert got.dtype == np.float64
    close(got, R.col2im(dcols, x_shape, 3, 3, 1, 0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_pooling_and_the_fused_block(k, stride, rng):
    n, c, h, w = 2, 3, 7, 8
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[0, 0, :2, :2] = 1.5  # a tie: the first position must win
    out, arg = R.maxpool_forward(x, k, stride)
    got_out, got_arg = C.maxpool_forward(dev(x), k, stride)
    exact(got_out, out)
    exact(got_arg, arg)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    close(C.maxpool_backward(dev(dout), dev(arg), x.shape, k, stride),
          R.maxpool_backward(dout, arg, x.shape, k, stride))
    y = rng.standard_normal((c, n * h * w)).astype(np.float32)
    b = np.array([0.5, -4.0, 0.0], np.float32)  # channel 1 mostly clipped by the ReLU
    out, arg = R.conv_relu_pool_forward(y, b, n, h, w, k, stride)
    assert (out == 0).any() and (out > 0).any()  # the ReLU clips some windows: both branches run
    got_out, got_arg = C.conv_relu_pool_forward(dev(y), dev(b), n, h, w, k, stride)
    exact(got_out, out)
    exact(got_arg, arg)
    got_dy, got_db = C.conv_relu_pool_backward(dev(dout), dev(arg), dev(out), h, w, k, stride)
    want_dy, want_db = R.conv_relu_pool_backward(dout, arg, out, h, w, k, stride)
    close(got_dy, want_dy)
    close(got_db, want_db)


def test_activations_dropout_dense_bias_and_loss(rng):
    x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    d = rng.standard_normal(x.shape).astype(np.float32)
    y = R.relu_forward(x)
    exact(C.relu_forward(dev(x)), y)
    exact(C.relu_backward(dev(d), dev(y)), R.relu_backward(d, y))
    out, mask = C.dropout_forward(dev(x), 0.3, 7, 11)
    want_out, want_mask = R.dropout_forward(x, 0.3, 7, 11)
    exact(mask, want_mask)  # the same counter-based stream as NumPy and the CPU, bit for bit
    assert 0.2 < (want_mask == 0).mean() < 0.4
    close(out, want_out)
    close(C.dropout_backward(dev(d), mask), R.dropout_backward(d, want_mask))
    yd = rng.standard_normal((7, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    got = dev(yd)
    assert C.bias_add(got, dev(b)) is got  # in place
    close(got, yd + b)
    close(C.bias_grad(dev(yd)), R.bias_grad(yd))
    logits = (rng.standard_normal((64, 10)) * 5).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    logits[0, 3] = logits[0, 7] = logits[0].max() + 1  # a tie for the argmax: the first wins
    labels[0] = 3
    probs, stats = C.softmax_xent_forward(dev(logits), dev(labels))
    want_probs, want_stats = R.softmax_xent_forward(logits, labels)
    close(probs, want_probs)
    close(stats, want_stats, rtol=1e-6)
    assert C.to_numpy(stats)[1] == want_stats[1]  # the count is exact
    close(C.softmax_xent_backward(dev(want_probs), dev(labels)), R.softmax_xent_backward(want_probs, labels))
    _, stats = C.softmax_xent_forward(dev(logits), dev(labels), smoothing=0.1)  # label smoothing
    close(stats, R.softmax_xent_forward(logits, labels, smoothing=0.1)[1], rtol=1e-6)
    close(C.softmax_xent_backward(dev(want_probs), dev(labels), smoothing=0.1),
          R.softmax_xent_backward(want_probs, labels, smoothing=0.1))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1)])
def test_residual_sum_and_global_average_pooling(shape, rng):
    a, b = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    exact(C.add_relu_forward(dev(a), dev(b)), R.add_relu_forward(a, b))  # one rounding, as the reference
    exact(C.add(dev(a), dev(b)), R.add(a, b))
    buf = dev(a)
    C.add_relu_forward(buf, dev(b), out=buf)  # out may alias an operand
    exact(buf, np.maximum(a + b, 0))
    n, c = shape[:2]
    close(C.global_avgpool_forward(dev(a)), R.global_avgpool_forward(a), rtol=1e-6)
    dout = rng.standard_normal((n, c)).astype(np.float32)
    close(C.global_avgpool_backward(dev(dout), shape), R.global_avgpool_backward(dout, shape), rtol=1e-6)
    got64 = C.global_avgpool_forward(dev(a.astype(np.float64)))
    assert got64.dtype == np.float64
    close(got64, R.global_avgpool_forward(a.astype(np.float64)), rtol=1e-13, atol=1e-13)


def test_softmax_writes_into_a_row_of_the_per_step_stats(rng):
    """The trainer passes ``stats[step]``, a view of a device array: the row is written, not a copy."""
    stats = C.zeros((3, 2), np.float64)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    C.softmax_xent_forward(dev(logits), dev(labels), stats=stats[1])
    host = C.to_numpy(stats)
    np.testing.assert_allclose(host[1], R.softmax_xent_forward(logits, labels)[1], rtol=1e-6)
    assert (host[[0, 2]] == 0).all()


def test_grid_stride_loops_cover_arrays_larger_than_the_grid(rng, monkeypatch):
    monkeypatch.setattr(_launch, "BLOCKS_PER_SM", 1)  # one block of 256 threads for 700 elements
    assert _launch.blocks_1d(700) == 1
    x = rng.standard_normal(700).astype(np.float32)
    exact(C.relu_forward(dev(x)), R.relu_forward(x))
    exact(C.zeros(700), np.zeros(700, np.float32))


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 3)])
def test_batchnorm(shape, rng):
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    c = shape[1]
    g, be = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    for training in (True, False):
        rm0, rv0 = rng.standard_normal(c).astype(np.float32), rng.random(c).astype(np.float32) + 0.5
        rm1, rv1 = dev(rm0), dev(rv0)
        want = R.batchnorm_forward(x, g, be, rm0, rv0, 0.1, 1e-5, training)
        got = C.batchnorm_forward(dev(x), dev(g), dev(be), rm1, rv1, 0.1, 1e-5, training)
        for a, b in zip(got, want):
            close(a, b)
        close(rm1, rm0)  # running statistics updated in place on the device
        close(rv1, rv0)
    d = rng.standard_normal(shape).astype(np.float32)
    _, x_hat, inv_std = want
    for training in (True, False):  # after a training-mode and an inference-mode forward pass
        ref_grads = [np.zeros(c, np.float32), np.zeros(c, np.float32)]
        got_grads = [C.zeros(c), C.zeros(c)]
        want_dx = R.batchnorm_backward(d, x_hat, inv_std, g, *ref_grads, training=training)
        got_dx = C.batchnorm_backward(dev(d), dev(x_hat), dev(inv_std), dev(g), *got_grads, training=training)
        close(got_dx, want_dx, atol=1e-4)
        for got, want in zip(got_grads, ref_grads):
            close(got, want, atol=1e-4)


def test_reductions_split_across_blocks(rng, monkeypatch):
    """Per-channel sums cut into several blocks (as on a large GPU) give the same sums."""
    monkeypatch.setattr(_launch, "MIN_REDUCE", 16)
    monkeypatch.setattr(_launch, "sm_count", lambda: 2)
    assert _launch.reduction_splits(2, 40) == (3, 14)
    dout = rng.standard_normal((40, 2)).astype(np.float32)
    close(C.bias_grad(dev(dout)), dout.sum(axis=0))
    x = rng.standard_normal((5, 2, 8)).astype(np.float32)
    rm, rv = dev(np.zeros(2, np.float32)), dev(np.ones(2, np.float32))
    _, _, inv_std = C.batchnorm_forward(dev(x), dev(np.ones(2, np.float32)), dev(np.zeros(2, np.float32)),
                                        rm, rv, 1.0, 0.0, True)
    close(inv_std, 1 / x.std(axis=(0, 2)))
    close(rm, x.mean(axis=(0, 2)))


def test_optimizer_steps(rng):
    shape = (17, 5)
    p0 = rng.standard_normal(shape).astype(np.float32)
    ref = [p0.copy(), np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
    got = [dev(p0), C.zeros(shape), C.zeros(shape)]
    for t in range(1, 4):
        g = rng.standard_normal(shape).astype(np.float32)
        R.adam_step(ref[0], g, ref[1], ref[2], 1e-2, 0.9, 0.999, 1e-8, t, weight_decay=0.01)
        C.adam_step(got[0], dev(g), got[1], got[2], 1e-2, 0.9, 0.999, 1e-8, t, weight_decay=0.01)
    for a, b in zip(got, ref):
        close(a, b)
    assert np.abs(ref[0] - p0).max() > 1e-2  # the parameters moved
    for nesterov in (False, True):
        ref = [p0.copy(), np.zeros(shape, np.float32)]
        got = [dev(p0), C.zeros(shape)]
        for _ in range(3):
            g = rng.standard_normal(shape).astype(np.float32)
            R.sgd_step(ref[0], g, ref[1], 0.1, 0.9, nesterov, weight_decay=0.01)
            C.sgd_step(got[0], dev(g), got[1], 0.1, 0.9, nesterov, weight_decay=0.01)
        for a, b in zip(got, ref):
            close(a, b)
