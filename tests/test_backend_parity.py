"""Every compiled backend computes what the NumPy reference computes (float32 tolerance)."""
from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest

import kernels
from kernels import numpy_ref as R
from kernels.api import CAPABILITIES, CONV_BN_KERNELS, KERNELS, conv_output_size
from tests.conftest import host_backends

COMPILED = [b for b in host_backends() if b != "numpy"]
RTOL, ATOL = 1e-4, 1e-5  # float32, sums of a few hundred terms

SHAPES = [  # (N, C, H, W, kh, kw, stride, padding): batch 1, stride 2, padding, odd sizes
    (2, 3, 5, 5, 3, 3, 1, 0),
    (1, 1, 7, 6, 3, 3, 2, 1),
    (3, 2, 9, 8, 2, 3, 2, 1),
    (4, 5, 13, 13, 3, 3, 1, 0),
    (1, 4, 28, 28, 3, 3, 1, 1),
    (2, 2, 6, 6, 1, 1, 1, 0),
    (1, 2, 4, 4, 3, 3, 1, 2),
]
POOLS = [(2, 2), (3, 2), (2, 1), (3, 3)]


def close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **({"rtol": RTOL, "atol": ATOL} | kw))


def test_every_backend_module_has_the_same_signatures():
    """Same names, same argument names and defaults, in every backend (CUDA checked without a GPU)."""
    for module_name in ("kernels.numba_cpu", "kernels.numba_cuda"):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            pytest.fail(f"{module_name} does not import: {exc}")
        names = KERNELS + (CONV_BN_KERNELS if module.CONV_BN else ())
        for name in names:
            assert hasattr(module, name), f"{module_name} lacks {name}"
            assert inspect.signature(getattr(module, name)) == inspect.signature(getattr(R, name)), \
                f"{module_name}.{name}"
        assert sorted(module.__all__) == sorted(names), module_name


def test_every_backend_describes_itself_with_the_same_capabilities():
    """Code outside kernels/ asks a backend what it can do through these attributes, never by its name."""
    assert R.CONV_BN and sorted(R.__all__) == sorted(KERNELS + CONV_BN_KERNELS)
    for module_name in kernels.BACKENDS.values():
        module = importlib.import_module(module_name)
        for attr in CAPABILITIES:
            assert hasattr(module, attr), f"{module_name} lacks {attr}"
        assert isinstance(module.SYNC_EVERY, int) and module.SYNC_EVERY >= 1
        assert isinstance(module.FUSE_BY_DEFAULT, bool) and isinstance(module.COMPILES, bool)
        assert isinstance(module.CONV_BN, bool)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_convolution_kernels(backend, dtype, shape, rng):
    K = kernels.get(backend)
    n, c, h, w, kh, kw, s, p = shape
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    cols = R.im2col(x, kh, kw, s, p)
    np.testing.assert_array_equal(K.im2col(x, kh, kw, s, p), cols)  # a pure copy: exact
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    close(K.col2im(dcols, x.shape, kh, kw, s, p), R.col2im(dcols, x.shape, kh, kw, s, p))
    f = 3
    wmat = rng.standard_normal((f, c * kh * kw)).astype(dtype)
    for ta, tb in ((False, False), (True, False), (False, True), (True, True)):
        a = np.ascontiguousarray(wmat.T) if ta else wmat
        bm = np.ascontiguousarray(cols.T) if tb else cols
        close(K.gemm(a, bm, ta, tb), R.gemm(a, bm, ta, tb))
    y = R.gemm(wmat, cols)
    b = rng.standard_normal(f).astype(dtype)
    close(K.bias_add_nchw(y, b, n), R.bias_add_nchw(y, b, n))
    ho, wo = conv_output_size(h, kh, s, p), conv_output_size(w, kw, s, p)
    dout = rng.standard_normal((n, f, ho, wo)).astype(dtype)
    for got, want in zip(K.bias_grad_nchw(dout), R.bias_grad_nchw(dout)):
        close(got, want)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("k,stride", POOLS)
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (1, 1, 6, 6), (4, 2, 13, 11)])
def test_pooling_and_fused_block(backend, k, stride, shape, rng):
    K = kernels.get(backend)
    n, c, h, w = shape
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, :2, :2] = 1.5  # a tie: both backends must pick the first position
    out, arg = R.maxpool_forward(x, k, stride)
    got_out, got_arg = K.maxpool_forward(x, k, stride)
    np.testing.assert_array_equal(got_out, out)
    np.testing.assert_array_equal(got_arg, arg)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    # Output buffers are reused across steps: start them as NaN so a pixel left unwritten fails.
    stale = np.full(shape, np.nan, np.float32)
    close(K.maxpool_backward(dout, arg, x.shape, k, stride, out=stale),
          R.maxpool_backward(dout, arg, x.shape, k, stride))
    y = rng.standard_normal((c, n * h * w)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    out, arg = R.conv_relu_pool_forward(y, b, n, h, w, k, stride)
    got_out, got_arg = K.conv_relu_pool_forward(y, b, n, h, w, k, stride)
    np.testing.assert_array_equal(got_out, out)
    np.testing.assert_array_equal(got_arg, arg)
    stale_dy, stale_db = np.full((c, n * h * w), np.nan, np.float32), np.full(c, np.nan, np.float32)
    for got, want in zip(K.conv_relu_pool_backward(dout, arg, out, h, w, k, stride, dy=stale_dy, db=stale_db),
                         R.conv_relu_pool_backward(dout, arg, out, h, w, k, stride)):
        close(got, want)


@pytest.mark.parametrize("backend", COMPILED)
def test_elementwise_dense_loss_and_dropout(backend, rng):
    K = kernels.get(backend)
    x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(K.relu_forward(x), R.relu_forward(x))
    d = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(K.relu_backward(d, R.relu_forward(x)), R.relu_backward(d, R.relu_forward(x)))
    out, mask = K.dropout_forward(x, 0.3, 7, 11)
    ref_out, ref_mask = R.dropout_forward(x, 0.3, 7, 11)
    np.testing.assert_array_equal(mask, ref_mask)  # the counter-based stream is the same everywhere
    close(out, ref_out)
    close(K.dropout_backward(d, mask), R.dropout_backward(d, mask))
    y = rng.standard_normal((7, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    close(K.bias_add(y.copy(), b), R.bias_add(y.copy(), b))
    close(K.bias_grad(y), R.bias_grad(y))
    logits = (rng.standard_normal((64, 10)) * 5).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    p1, s1 = K.softmax_xent_forward(logits, labels)
    p0, s0 = R.softmax_xent_forward(logits, labels)
    close(p1, p0)
    close(s1, s0)
    close(K.softmax_xent_backward(p0, labels), R.softmax_xent_backward(p0, labels))
    _, s1 = K.softmax_xent_forward(logits, labels, smoothing=0.1)
    _, s0 = R.softmax_xent_forward(logits, labels, smoothing=0.1)
    close(s1, s0)
    close(K.softmax_xent_backward(p0, labels, smoothing=0.1), R.softmax_xent_backward(p0, labels, smoothing=0.1))


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (5, 7, 8, 8)])
def test_residual_sum_and_global_average_pooling(backend, dtype, shape, rng):
    """The residual block's kernels (add + ReLU, the gradient sum) and global average pooling."""
    K = kernels.get(backend)
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    np.testing.assert_array_equal(K.add_relu_forward(a, b), R.add_relu_forward(a, b))  # one rounding: exact
    np.testing.assert_array_equal(K.add(a, b), R.add(a, b))
    assert (R.add_relu_forward(a, b) == np.maximum(a + b, 0)).all()
    stale = np.full(shape, 7, dtype)
    assert K.add(a, b, out=stale) is stale and (stale == a + b).all()  # writes every element of out
    in_place = a.copy()
    K.add_relu_forward(in_place, b, out=in_place)  # out may be an operand (the block sums into a buffer)
    np.testing.assert_array_equal(in_place, np.maximum(a + b, 0))
    n, c, h, w = shape
    want = R.global_avgpool_forward(a)
    np.testing.assert_allclose(want, a.astype(np.float64).mean(axis=(2, 3)),
                               rtol=1e-6 if dtype == np.float32 else 1e-13)
    close(K.global_avgpool_forward(a), want, rtol=1e-6)
    dout = rng.standard_normal((n, c)).astype(dtype)
    got = K.global_avgpool_backward(dout, shape, out=np.full(shape, 7, dtype))
    close(got, R.global_avgpool_backward(dout, shape), rtol=1e-6)
    with pytest.raises(ValueError, match="operands differ"):
        K.add(a, b.reshape(-1))
    with pytest.raises(ValueError, match="dout must have shape"):
        K.global_avgpool_backward(dout[:, :0], shape)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (1, 2, 3, 3), (6, 7)])
def test_batchnorm(backend, shape, rng):
    K = kernels.get(backend)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    c = shape[1]
    g, be = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    for training in (True, False):
        rm0, rv0 = rng.standard_normal(c).astype(np.float32), rng.random(c).astype(np.float32) + 0.5
        rm1, rv1 = rm0.copy(), rv0.copy()
        got = K.batchnorm_forward(x, g, be, rm1, rv1, 0.1, 1e-5, training)
        want = R.batchnorm_forward(x, g, be, rm0, rv0, 0.1, 1e-5, training)
        for a, b in zip(got, want):
            close(a, b)
        close(rm1, rm0)
        close(rv1, rv0)
    d = rng.standard_normal(shape).astype(np.float32)
    _, x_hat, inv_std = want
    for training in (True, False):  # after a training-mode and an inference-mode forward pass
        grads = [np.zeros(c, np.float32) for _ in range(4)]
        close(K.batchnorm_backward(d, x_hat, inv_std, g, grads[0], grads[1], training=training),
              R.batchnorm_backward(d, x_hat, inv_std, g, grads[2], grads[3], training=training), atol=1e-4)
        close(grads[0], grads[2], atol=1e-4)
        close(grads[1], grads[3], atol=1e-4)
    # Inference mode: the statistics are constants, so the gradient is a per-channel scale.
    scale = (g * inv_std).reshape((1, -1) + (1,) * (len(shape) - 2))
    close(R.batchnorm_backward(d, x_hat, inv_std, g, grads[2], grads[3], training=False), d * scale)


@pytest.mark.parametrize("backend", COMPILED)
def test_optimizer_steps(backend, rng):
    K = kernels.get(backend)
    shape = (17, 5)
    p0 = rng.standard_normal(shape).astype(np.float32)
    states = [[p0.copy(), np.zeros(shape, np.float32), np.zeros(shape, np.float32)] for _ in range(2)]
    for t in range(1, 4):
        g = rng.standard_normal(shape).astype(np.float32)
        for module, (p, m, v) in zip((K, R), states):
            module.adam_step(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, t, weight_decay=0.01)
    for a, b in zip(*states):
        close(a, b)
    states = [[p0.copy(), np.zeros(shape, np.float32)] for _ in range(2)]
    for _ in range(3):
        g = rng.standard_normal(shape).astype(np.float32)
        for module, (p, vel) in zip((K, R), states):
            module.sgd_step(p, g, vel, 0.1, 0.9, True, weight_decay=0.01)
    for a, b in zip(*states):
        close(a, b)


def _model(preset, backend, optimizer):
    from scratchcnn.nn.losses import SoftmaxCrossEntropy
    from scratchcnn.nn.presets import build_model

    model = build_model(preset, (1, 28, 28), 10, seed=3, backend=backend)
    return model.compile(optimizer, SoftmaxCrossEntropy())


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("preset", ["classic", "vgg-small", "resnet8"])
def test_whole_network_forward_and_backward(backend, preset, rng):
    """One training-mode forward and backward pass (fused on the compiled backend): same loss and gradients."""
    from scratchcnn.nn.optimizers import SGD

    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    results = []
    for name in ("numpy", backend):
        model = _model(preset, name, SGD(0.1))
        loss = model.loss(model.forward(model.K.asarray(x), training=True), model.K.asarray(y))
        model.backward(model.loss.backward())
        results.append((loss, {k: np.array(model.K.to_numpy(g)) for k, _, g in model.parameters()}))
    (loss0, grads0), (loss1, grads1) = results
    assert loss1 == pytest.approx(loss0, rel=1e-5)
    for key, g in grads0.items():
        close(grads1[key], g, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(g).max()), err_msg=key)


@pytest.mark.parametrize("backend", COMPILED)
def test_training_steps_match_the_reference(backend, rng):
    """Five SGD steps of the default network from the same seed: same weights and loss as NumPy.

    SGD rather than Adam: Adam divides each gradient by its own magnitude, so on a
    weight whose gradient is pure round-off it turns 1e-9 differences into lr-sized
    steps of either sign. (``test_optimizer_steps`` holds the Adam kernel itself.)
    """
    from scratchcnn.nn.optimizers import SGD
    from scratchcnn.engine.training import Trainer

    x = rng.standard_normal((40, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    models = []
    for name in ("numpy", backend):
        model = _model("classic", name, SGD(0.05, momentum=0.9))
        history = Trainer(model, batch_size=8, seed=5, progress=False, log=lambda _: None).fit(x, y, 1)
        models.append((model, history))
    (ref, h0), (got, h1) = models
    assert h1["loss"][0] == pytest.approx(h0["loss"][0], rel=1e-4)
    for (key, a), b in zip(ref.named_arrays().items(), got.named_arrays().values()):
        close(b, a, rtol=1e-3, atol=1e-4, err_msg=key)
