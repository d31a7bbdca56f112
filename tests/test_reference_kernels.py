"""The NumPy reference kernels against naive loops written straight from the definitions."""
from __future__ import annotations

import numpy as np
import pytest

from kernels import numpy_ref as R
from kernels.api import conv_output_size
from tests.oracles import conv2d_naive, maxpool_naive, softmax_xent_naive

CONV_CASES = [  # (N, C, H, W, C_out, kh, kw, stride, padding)
    (2, 3, 5, 5, 4, 3, 3, 1, 0),
    (1, 1, 7, 6, 1, 3, 3, 2, 1),   # batch 1, one channel, stride 2, padding 1, odd sizes
    (3, 2, 9, 8, 2, 2, 3, 2, 1),   # non-square kernel
    (2, 2, 4, 4, 3, 1, 1, 1, 0),   # 1x1 convolution
    (1, 2, 3, 3, 2, 3, 3, 1, 2),   # padding wider than needed
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_gemm_equals_naive_convolution(case, rng):
    n, c, h, w, f, kh, kw, s, p = case
    x = rng.standard_normal((n, c, h, w))
    weights = rng.standard_normal((f, c, kh, kw))
    b = rng.standard_normal(f)
    ho, wo = conv_output_size(h, kh, s, p), conv_output_size(w, kw, s, p)
    y = R.gemm(weights.reshape(f, -1), R.im2col(x, kh, kw, s, p))
    out = R.bias_add_nchw(y, b, n).reshape(n, f, ho, wo)
    np.testing.assert_allclose(out, conv2d_naive(x, weights, b, s, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_col2im_is_the_adjoint_of_im2col(case, rng):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: col2im is exactly the transpose of im2col.
    n, c, h, w, _, kh, kw, s, p = case
    x = rng.standard_normal((n, c, h, w))
    cols = rng.standard_normal(R.im2col(x, kh, kw, s, p).shape)
    lhs = np.sum(R.im2col(x, kh, kw, s, p) * cols)
    rhs = np.sum(x * R.col2im(cols, x.shape, kh, kw, s, p))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_im2col_hand_checked_example():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    cols = R.im2col(x, 2, 2, stride=2)
    # Four 2x2 windows: top-left window is pixels 0, 1, 4, 5 -> column 0 reads (0, 1, 4, 5).
    np.testing.assert_array_equal(cols[:, 0], [0, 1, 4, 5])
    np.testing.assert_array_equal(cols[:, 3], [10, 11, 14, 15])


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_maxpool_equals_naive(k, stride, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    out, arg = R.maxpool_forward(x, k, stride)
    ref_out, ref_arg = maxpool_naive(x, k, stride)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)


def test_maxpool_ties_go_to_the_first_position_and_route_once():
    x = np.ones((1, 1, 2, 2))
    out, arg = R.maxpool_forward(x, 2, 2)
    assert arg[0, 0, 0, 0] == 0
    dx = R.maxpool_backward(np.full((1, 1, 1, 1), 5.0), arg, x.shape, 2, 2)
    np.testing.assert_array_equal(dx[0, 0], [[5.0, 0.0], [0.0, 0.0]])


def test_overlapping_pool_windows_add_their_gradients():
    x = np.array([[[[0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]]])
    out, arg = R.maxpool_forward(x, 2, 1)  # windows at columns 0-1 and 1-2 both pick pixel (0, 1)
    dx = R.maxpool_backward(np.array([[[[1.0, 2.0]]]]), arg, x.shape, 2, 1)
    assert dx[0, 0, 0, 1] == 3.0 and dx.sum() == 3.0


def test_softmax_xent_is_stable_and_matches_naive(rng):
    logits = rng.standard_normal((6, 10)) * 50 + 1000  # naive exp() would overflow
    labels = rng.integers(0, 10, 6)
    probs, stats = R.softmax_xent_forward(logits, labels)
    assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(axis=1), 1)
    assert stats[0] / 6 == pytest.approx(softmax_xent_naive(logits, labels), rel=1e-12)
    assert stats[1] == np.sum(logits.argmax(1) == labels)
    grad = R.softmax_xent_backward(probs, labels)
    onehot = np.eye(10)[labels]
    np.testing.assert_allclose(grad, (probs - onehot) / 6, rtol=1e-12)


def test_softmax_xent_uniform_logits_give_log_k():
    _, stats = R.softmax_xent_forward(np.zeros((2, 4)), np.array([0, 3]))
    assert stats[0] / 2 == pytest.approx(np.log(4))


def test_adam_first_step_moves_each_weight_by_lr():
    # With bias correction, step 1 gives m_hat = g and v_hat = g**2, so the update is lr * g/|g| (Kingma & Ba, Sec. 2).
    p = np.array([1.0, -2.0, 3.0])
    g = np.array([0.5, -4.0, 1e-3])
    m, v = np.zeros(3), np.zeros(3)
    R.adam_step(p, g, m, v, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-12, t=1)
    np.testing.assert_allclose(p, [0.9, -1.9, 2.9], rtol=1e-9)


def test_sgd_momentum_and_nesterov_by_hand():
    p, v = np.array([1.0]), np.array([0.0])
    R.sgd_step(p, np.array([2.0]), v, lr=0.1, momentum=0.9, nesterov=False)
    assert p[0] == pytest.approx(0.8) and v[0] == pytest.approx(2.0)
    R.sgd_step(p, np.array([2.0]), v, lr=0.1, momentum=0.9, nesterov=False)
    assert v[0] == pytest.approx(3.8) and p[0] == pytest.approx(0.42)
    p, v = np.array([1.0]), np.array([0.0])
    R.sgd_step(p, np.array([2.0]), v, lr=0.1, momentum=0.9, nesterov=True)
    assert p[0] == pytest.approx(1.0 - 0.1 * (2.0 + 0.9 * 2.0))


def test_dropout_keeps_the_expected_fraction_and_scales():
    x = np.ones((200, 500))
    out, mask = R.dropout_forward(x, 0.3, seed=1, counter=0)
    kept = mask > 0
    assert abs(kept.mean() - 0.7) < 0.005  # 100,000 Bernoulli draws: std 0.0014
    np.testing.assert_allclose(out[kept], 1 / 0.7)
    assert out.mean() == pytest.approx(1.0, abs=0.01)
    other, _ = R.dropout_forward(x, 0.3, seed=1, counter=1)
    assert not np.array_equal(out, other)


def test_batchnorm_normalises_and_tracks_running_statistics(rng):
    x = rng.standard_normal((8, 3, 4, 4)) * 5 + 2
    rm, rv = np.zeros(3), np.ones(3)
    out, x_hat, inv_std = R.batchnorm_forward(x, np.ones(3), np.zeros(3), rm, rv, 0.1, 1e-5, True)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-5)
    np.testing.assert_allclose(rm, 0.1 * x.mean(axis=(0, 2, 3)))
    m = 8 * 16
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=(0, 2, 3)) * m / (m - 1))
    inference, _, _ = R.batchnorm_forward(x, np.ones(3), np.zeros(3), rm, rv, 0.1, 1e-5, False)
    np.testing.assert_allclose(inference, (x - rm[None, :, None, None]) / np.sqrt(rv + 1e-5)[None, :, None, None])


def test_kernels_raise_clear_errors():
    with pytest.raises(ValueError, match="4-D"):
        R.im2col(np.zeros((3, 4, 5)), 3, 3)
    with pytest.raises(ValueError, match="does not fit"):
        R.im2col(np.zeros((1, 1, 2, 2)), 3, 3)
    with pytest.raises(ValueError, match="inner dimensions"):
        R.gemm(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="expected shape"):
        R.im2col(np.zeros((1, 1, 4, 4)), 3, 3, out=np.zeros((9, 5)))


def test_label_smoothing_matches_its_definition(rng):
    # L = -sum_k target_k log p_k with target = (1 - eps) onehot + eps/K (Szegedy et al., 2016, Section 7).
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    eps = 0.2
    probs, stats = R.softmax_xent_forward(logits, labels, smoothing=eps)
    target = (1 - eps) * np.eye(4)[labels] + eps / 4
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    assert stats[0] == pytest.approx(-(target * log_p).sum(), rel=1e-12)
    np.testing.assert_allclose(R.softmax_xent_backward(probs, labels, smoothing=eps), (probs - target) / 5,
                               rtol=1e-12)
