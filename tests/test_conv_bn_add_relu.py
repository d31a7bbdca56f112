"""A residual block's end fused (last Conv-BN, shortcut, sum, ReLU): kernels against the reference, float64
gradients against central differences, and the fused inference epilogue against the layers one by one."""
from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels import numpy_ref as R
from scratchcnn.nn.gradcheck import rel_error
from scratchcnn.nn.layers import BatchNorm2D, Conv2D, Dense, GlobalAvgPool2D, ReLU, basic_block
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.plan import ConvBNAddReLU
from tests.conftest import host_backends
from tests.test_conv_bn import analytic_and_numerical_gradients

COMPILED = [b for b in host_backends() if b != "numpy" and kernels.get(b).CONV_BN]


def _close(got, want, dtype, scale=1.0):
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=tol, atol=tol * max(1.0, scale))


def test_the_reference_is_bn_then_the_sum_then_relu(rng):
    """``bn_add_relu_forward`` against the formula written out; ``conv2d_affine_forward``'s residual joins
    the sum before the ReLU."""
    z, r = rng.standard_normal((2, 3, 4, 5, 5))
    scale, shift, r_scale, r_shift = rng.standard_normal((4, 4))
    c = (1, -1, 1, 1)
    want = np.maximum(scale.reshape(c) * z + shift.reshape(c) + r_scale.reshape(c) * r + r_shift.reshape(c), 0)
    np.testing.assert_allclose(R.bn_add_relu_forward(z, scale, shift, r, r_scale, r_shift), want, rtol=1e-12, atol=1e-14)
    x, w = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    plain, _ = R.conv2d_affine_forward(x, w, scale, shift, False, 1, 1)
    residual = rng.standard_normal(plain.shape)
    fused, _ = R.conv2d_affine_forward(x, w, scale, shift, True, 1, 1, residual=residual)
    np.testing.assert_allclose(fused, np.maximum(plain + residual, 0), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="residual"):
        R.conv2d_affine_forward(x, w, scale, shift, True, 1, 1, residual=residual[:, :2])


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_the_reference(backend, dtype, rng):
    K = kernels.get(backend)
    z, r, g = (rng.standard_normal((5, 3, 7, 6)).astype(dtype) for _ in range(3))
    scale = np.array([1.5, -0.7, 0.0], dtype)
    shift, r_scale, r_shift = (rng.standard_normal(3).astype(dtype) for _ in range(3))
    out = K.bn_add_relu_forward(z, scale, shift, r, r_scale, r_shift, out=np.full_like(z, np.nan))
    _close(out, R.bn_add_relu_forward(z, scale, shift, r, r_scale, r_shift), dtype)
    mean, inv_std = rng.standard_normal(3).astype(dtype), (rng.random(3) + 0.5).astype(dtype)
    want = R.bn_backward_sums(g, z, mean, inv_std)
    got = K.bn_backward_sums(g, z, mean, inv_std, sums=np.full((2, 3), np.nan))
    _close(got, want, dtype, np.abs(want).max())
    for stride, k, padding in ((1, 3, 1), (2, 3, 1), (2, 1, 0)):  # the shapes a basic block has
        x = rng.standard_normal((9, 2, 8, 8)).astype(dtype)
        w = rng.standard_normal((3, 2, k, k)).astype(dtype)
        plain, _ = R.conv2d_affine_forward(x, w, scale, shift, False, stride, padding)
        residual = rng.standard_normal(plain.shape).astype(dtype)
        want, _ = R.conv2d_affine_forward(x, w, scale, shift, True, stride, padding, residual=residual)
        got, _ = K.conv2d_affine_forward(x, w, scale, shift, True, stride, padding, out=np.full_like(want, np.nan),
                                         residual=residual)
        _close(got, want, dtype, np.abs(want).max())


def _network(backend, dtype, fuse=True):
    """A stem, an identity block and a projection block (stride 2), pooled and classified."""
    layers = [Conv2D(2, 4, 3, padding=1, bias=False), BatchNorm2D(4), ReLU(),
              basic_block(4, 4), basic_block(4, 6, stride=2), GlobalAvgPool2D(), Dense(6, 3)]
    model = Sequential(layers, seed=5, fuse=fuse)
    return model.build((2, 6, 6), backend=backend, dtype=dtype)


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
def test_network_gradients_through_the_fused_block_end_in_float64(backend, rng):
    """Every parameter's and the input's gradient against central differences, through both block ends."""
    model = _network(backend, np.float64)
    tails = [layer.tail for layer in model.layers[3:5]]
    assert all(isinstance(t, ConvBNAddReLU) for t in tails) and tails[0].projection is None
    assert tails[1].projection is not None
    dx, numeric_dx, grads = analytic_and_numerical_gradients(model, rng.standard_normal((4, 2, 6, 6)),
                                                              np.array([0, 2, 1, 2]))
    assert rel_error(dx, numeric_dx) < 1e-6
    for key, grad, numeric in grads:
        assert rel_error(grad, numeric) < 1e-6, key


@pytest.mark.parametrize("backend", COMPILED)
def test_inference_adds_the_shortcut_in_the_convolutions_epilogue(backend, rng):
    """After training steps (non-trivial running statistics) the fused inference gives the unfused logits."""
    from scratchcnn.nn.optimizers import SGD

    fused, plain = _network(backend, np.float32), _network(backend, np.float32, fuse=False)
    assert plain.layers[3].tail is None
    batches = [rng.standard_normal((8, 2, 6, 6)).astype(np.float32) + step for step in range(3)]
    for model in (fused, plain):
        model.compile(SGD(0.1), SoftmaxCrossEntropy())
        for batch in batches:
            model.train_step(batch, np.arange(8) % 3)
    projection_bn = fused.layers[4].shortcut[1]
    assert not np.allclose(projection_bn.buffers["running_var"], 1.0)  # statistics moved
    x = rng.standard_normal((7, 2, 6, 6)).astype(np.float32)
    want = plain.forward(x, training=False)
    np.testing.assert_allclose(fused.forward(x, training=False), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    with pytest.raises(RuntimeError, match="training-mode forward"):
        fused.layers[4].tail.backward(np.ones((7, 6, 3, 3), np.float32))
