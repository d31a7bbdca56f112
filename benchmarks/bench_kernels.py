"""Every kernel of a training step, numpy vs cpu backend, at the default network's shapes for batch 64.

    python -m pytest benchmarks/bench_kernels.py --benchmark-enable   # one table per kernel

Each case calls a kernel exactly as a layer does in one training step (same
shapes, preallocated ``out=`` buffers). Before timing, the backend's result is
compared with the other backend's on the same inputs, so a benchmark also fails
when a kernel computes something else. Both backends run in this process with the
same thread count (NumPy's OpenBLAS and Numba both default to one thread per core);
``conftest.settle`` lets the other pool's threads go idle first.

Shapes (batch 64): conv1 1->32 on 28x28 (im2col columns 9 x 43,264), pool to
32x13x13; conv2 32->64 on 13x13 (288 x 7,744), pool to 64x5x5; dense1 1600->128;
dense2 128->10; Adam over all 225,034 parameters. Then the fused Conv-BN-ReLU(-Pool)
kernels at vgg-small's four convolutions (``vgg.conv0`` .. ``vgg.conv3``: 1->32 and 32->32
on 28x28, 32->64 and 64->64 on 14x14, padding 1).
"""
from __future__ import annotations

import numpy as np
import pytest

import kernels
import workloads

B = workloads.BATCH
RTOL = 1e-4  # float32 sums of up to 43,264 terms, relative to the largest entry
BACKENDS = [b for b in ("numpy", "cpu") if b in kernels.available()]
# (C_in, H, C_out) of each convolution, 3x3 kernel, stride 1, no padding, then 2x2 max-pool.
CONVS = {"conv1": (1, 28, 32), "conv2": (32, 13, 64)}


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _conv_cases(tag, c_in, h, c_out):
    """Kernels of one Conv2D-ReLU-MaxPool2D block: unfused (numpy's plan) and fused (cpu's plan)."""
    ho = h - 2          # 3x3 'valid' convolution
    po = ho // 2        # 2x2 pool, stride 2
    p = B * ho * ho     # GEMM columns
    rows = c_in * 9     # im2col rows

    def im2col(K, rng):
        x, cols = K.asarray(_rand(rng, B, c_in, h, h)), K.empty((rows, B * ho * ho))
        return lambda: K.im2col(x, 3, 3, 1, 0, out=cols)

    def gemm(K, rng):
        w, cols, y = K.asarray(_rand(rng, c_out, rows)), K.asarray(_rand(rng, rows, p)), K.empty((c_out, p))
        return lambda: K.gemm(w, cols, out=y)

    def bias_add_nchw(K, rng):
        y, b, out = K.asarray(_rand(rng, c_out, p)), K.asarray(_rand(rng, c_out)), K.empty((B, c_out, ho * ho))
        return lambda: K.bias_add_nchw(y, b, B, out=out)

    def relu_forward(K, rng):
        x, out = K.asarray(_rand(rng, B, c_out, ho, ho)), K.empty((B, c_out, ho, ho))
        return lambda: K.relu_forward(x, out=out)

    def maxpool_forward(K, rng):
        x = K.asarray(_rand(rng, B, c_out, ho, ho))
        out, arg = K.empty((B, c_out, po, po)), K.empty((B, c_out, po, po), np.int8)
        return lambda: K.maxpool_forward(x, 2, 2, out=out, argmax=arg)

    def conv_relu_pool_forward(K, rng):
        y, b = K.asarray(_rand(rng, c_out, p)), K.asarray(_rand(rng, c_out))
        out, arg = K.empty((B, c_out, po, po)), K.empty((B, c_out, po, po), np.int8)
        return lambda: K.conv_relu_pool_forward(y, b, B, ho, ho, 2, 2, out=out, argmax=arg)

    def maxpool_backward(K, rng):
        _, arg = kernels.get("numpy").maxpool_forward(_rand(rng, B, c_out, ho, ho), 2, 2)
        dout, arg, dx = K.asarray(_rand(rng, B, c_out, po, po)), K.asarray(arg), K.empty((B, c_out, ho, ho))
        return lambda: K.maxpool_backward(dout, arg, (B, c_out, ho, ho), 2, 2, out=dx)

    def relu_backward(K, rng):
        dout, y, dx = K.asarray(_rand(rng, B, c_out, ho, ho)), K.asarray(_rand(rng, B, c_out, ho, ho)), \
            K.empty((B, c_out, ho, ho))
        return lambda: K.relu_backward(dout, y, out=dx)

    def bias_grad_nchw(K, rng):
        dout, db, dcm = K.asarray(_rand(rng, B, c_out, ho, ho)), K.empty((c_out,)), K.empty((c_out, p))
        return lambda: K.bias_grad_nchw(dout, db=db, dout_cm=dcm)

    def conv_relu_pool_backward(K, rng):
        out, arg = kernels.get("numpy").conv_relu_pool_forward(_rand(rng, c_out, p), _rand(rng, c_out),
                                                               B, ho, ho, 2, 2)
        dout, out, arg = K.asarray(_rand(rng, B, c_out, po, po)), K.asarray(out), K.asarray(arg)
        dy, db = K.empty((c_out, p)), K.empty((c_out,))
        return lambda: K.conv_relu_pool_backward(dout, arg, out, ho, ho, 2, 2, dy=dy, db=db)

    def gemm_dW(K, rng):  # dW = dout_cm @ cols.T
        dcm, cols, dw = K.asarray(_rand(rng, c_out, p)), K.asarray(_rand(rng, rows, p)), K.empty((c_out, rows))
        return lambda: K.gemm(dcm, cols, trans_b=True, out=dw)

    def gemm_dcols(K, rng):  # dcols = W.T @ dout_cm
        w, dcm, dcols = K.asarray(_rand(rng, c_out, rows)), K.asarray(_rand(rng, c_out, p)), K.empty((rows, p))
        return lambda: K.gemm(w, dcm, trans_a=True, out=dcols)

    def col2im(K, rng):
        dcols, dx = K.asarray(_rand(rng, rows, p)), K.empty((B, c_in, h, h))
        return lambda: K.col2im(dcols, (B, c_in, h, h), 3, 3, 1, 0, out=dx)

    cases = [im2col, gemm, bias_add_nchw, relu_forward, maxpool_forward, conv_relu_pool_forward,
             maxpool_backward, relu_backward, bias_grad_nchw, conv_relu_pool_backward, gemm_dW]
    if tag != "conv1":  # the first layer's input is data: no input gradient
        cases += [gemm_dcols, col2im]
    return {f"{tag}.{fn.__name__}": fn for fn in cases}


def _dense_cases(tag, f_in, f_out):
    def gemm(K, rng):
        x, w, out = K.asarray(_rand(rng, B, f_in)), K.asarray(_rand(rng, f_in, f_out)), K.empty((B, f_out))
        return lambda: K.gemm(x, w, out=out)

    def bias_add(K, rng):
        y, b = K.asarray(_rand(rng, B, f_out)), K.asarray(_rand(rng, f_out))
        return lambda: K.bias_add(y, b)

    def gemm_dW(K, rng):  # dW = x.T @ dout
        x, dout, dw = K.asarray(_rand(rng, B, f_in)), K.asarray(_rand(rng, B, f_out)), K.empty((f_in, f_out))
        return lambda: K.gemm(x, dout, trans_a=True, out=dw)

    def bias_grad(K, rng):
        dout, db = K.asarray(_rand(rng, B, f_out)), K.empty((f_out,))
        return lambda: K.bias_grad(dout, out=db)

    def gemm_dx(K, rng):  # dx = dout @ W.T
        dout, w, dx = K.asarray(_rand(rng, B, f_out)), K.asarray(_rand(rng, f_in, f_out)), K.empty((B, f_in))
        return lambda: K.gemm(dout, w, trans_b=True, out=dx)

    return {f"{tag}.{fn.__name__}": fn for fn in (gemm, bias_add, gemm_dW, bias_grad, gemm_dx)}


def _head_cases():
    """ReLU and dropout after dense1, the loss, and Adam over the whole model."""
    def relu_forward(K, rng):
        x, out = K.asarray(_rand(rng, B, 128)), K.empty((B, 128))
        return lambda: K.relu_forward(x, out=out)

    def relu_backward(K, rng):
        dout, y, dx = K.asarray(_rand(rng, B, 128)), K.asarray(_rand(rng, B, 128)), K.empty((B, 128))
        return lambda: K.relu_backward(dout, y, out=dx)

    def dropout_forward(K, rng):
        x, out, mask = K.asarray(_rand(rng, B, 128)), K.empty((B, 128)), K.empty((B, 128))
        return lambda: K.dropout_forward(x, 0.5, 1234, 0, out=out, mask=mask)

    def dropout_backward(K, rng):
        dout, mask, dx = K.asarray(_rand(rng, B, 128)), K.asarray(_rand(rng, B, 128)), K.empty((B, 128))
        return lambda: K.dropout_backward(dout, mask, out=dx)

    def softmax_xent_forward(K, rng):
        logits, labels = K.asarray(_rand(rng, B, 10)), K.asarray(rng.integers(0, 10, B))
        probs, stats = K.empty((B, 10)), K.empty((2,), np.float64)
        return lambda: K.softmax_xent_forward(logits, labels, probs=probs, stats=stats)

    def softmax_xent_backward(K, rng):
        probs = K.asarray(np.full((B, 10), 0.1, np.float32) + 0.01 * _rand(rng, B, 10))
        labels, dlogits = K.asarray(rng.integers(0, 10, B)), K.empty((B, 10))
        return lambda: K.softmax_xent_backward(probs, labels, out=dlogits)

    def adam_all_parameters(K, rng):
        model = workloads.default_model(K.name)
        for _, _, grad in model.parameters():
            grad[...] = K.asarray(_rand(rng, *grad.shape))
        return lambda: (model.optimizer.step(model.parameters()), [p for _, p, _ in model.parameters()])[1]

    cases = {f"dense1.{fn.__name__}": fn
             for fn in (relu_forward, relu_backward, dropout_forward, dropout_backward)}
    cases |= {f"loss.{fn.__name__}": fn for fn in (softmax_xent_forward, softmax_xent_backward)}
    return cases | {"adam_step.all_parameters": adam_all_parameters}


# vgg-small's Conv-BN-ReLU(-Pool) blocks: (C_in, H, C_out, pooled), 3x3 kernel, stride 1, padding 1.
VGG_CONVS = {"vgg.conv0": (1, 28, 32, False), "vgg.conv1": (32, 28, 32, True),
             "vgg.conv2": (32, 14, 64, False), "vgg.conv3": (64, 14, 64, True)}


def _conv_bn_cases(tag, c_in, h, c_out, pooled):
    """The kernels of one fused ConvBNReLU step (scratchcnn.nn.plan) at vgg-small's shapes, batch 64."""
    shape, pool = (B, c_out, h, h), (B, c_out, h // 2, h // 2)

    def conv2d_affine_forward(K, rng):
        x, w = K.asarray(_rand(rng, B, c_in, h, h)), K.asarray(_rand(rng, c_out, c_in, 3, 3))
        scale, shift, out, stats = K.asarray(_rand(rng, c_out)), K.asarray(_rand(rng, c_out)), K.empty(shape), \
            K.empty((2, c_out), np.float64)
        return lambda: K.conv2d_affine_forward(x, w, scale, shift, False, 1, 1, out=out, stats=stats)

    def conv2d_affine_backward(K, rng):
        g, z, x = K.asarray(_rand(rng, *shape)), K.asarray(_rand(rng, *shape)), K.asarray(_rand(rng, B, c_in, h, h))
        w, coef = K.asarray(_rand(rng, c_out, c_in, 3, 3)), [K.asarray(_rand(rng, c_out)) for _ in range(3)]
        dw, dx = K.empty((c_out, c_in, 3, 3)), K.empty((B, c_in, h, h))
        need_dx = c_in > 1  # the first layer's input is data: no input gradient
        return lambda: tuple(a for a in K.conv2d_affine_backward(g, z, *coef, x, w, 1, 1, need_dx, dw=dw,
                                                          dx=dx if need_dx else None) if a is not None)

    def bn_relu_forward(K, rng):
        z, scale, shift = K.asarray(_rand(rng, *shape)), K.asarray(_rand(rng, c_out)), K.asarray(_rand(rng, c_out))
        if not pooled:
            out = K.empty(shape)
            return lambda: K.bn_relu_forward(z, scale, shift, out=out)
        out, arg = K.empty(pool), K.empty(pool, np.int8)
        return lambda: K.bn_relu_pool_forward(z, scale, shift, 2, 2, out=out, argmax=arg)

    def bn_relu_backward(K, rng):
        z, scale, shift = _rand(rng, *shape), _rand(rng, c_out), _rand(rng, c_out)
        mean, inv_std = K.asarray(_rand(rng, c_out)), K.asarray(np.abs(_rand(rng, c_out)) + 0.5)
        g, sums = K.empty(shape), K.empty((2, c_out), np.float64)
        R = kernels.get("numpy")
        if not pooled:
            out = K.asarray(R.bn_relu_forward(z, scale, shift))
            dout, z = K.asarray(_rand(rng, *shape)), K.asarray(z)
            return lambda: K.bn_relu_backward(dout, out, z, mean, inv_std, g=g, sums=sums)
        out, arg = (K.asarray(a) for a in R.bn_relu_pool_forward(z, scale, shift, 2, 2))
        dout, z = K.asarray(_rand(rng, *pool)), K.asarray(z)
        return lambda: K.bn_relu_pool_backward(dout, arg, out, z, mean, inv_std, 2, 2, g=g, sums=sums)

    return {f"{tag}.{fn.__name__}": fn for fn in (conv2d_affine_forward, bn_relu_forward, bn_relu_backward,
                                                   conv2d_affine_backward)}


CASES = {**_conv_cases("conv1", *CONVS["conv1"]), **_conv_cases("conv2", *CONVS["conv2"]),
         **_dense_cases("dense1", 1600, 128), **_dense_cases("dense2", 128, 10), **_head_cases()}
for _tag, _conv in VGG_CONVS.items():
    CASES |= _conv_bn_cases(_tag, *_conv)


def _flat(result):
    """A kernel's result as a list of host arrays (kernels return an array or a tuple of them)."""
    items = result if isinstance(result, (tuple, list)) else [result]
    return [np.array(kernels.get("numpy").to_numpy(a)) for a in items]


def test_shapes_are_those_of_the_default_network():
    """The shapes written above are what the CLI's default network computes on 28x28 images."""
    shapes = workloads.default_model("numpy").output_shapes()
    (c1_in, h1, c1_out), (c2_in, h2, c2_out) = CONVS["conv1"], CONVS["conv2"]
    assert workloads.INPUT_SHAPE == (c1_in, h1, h1)
    assert shapes[0] == (c1_out, h1 - 2, h1 - 2)      # conv1
    assert shapes[2] == (c2_in, h2, h2)               # pool1, conv2's input
    assert shapes[3] == (c2_out, h2 - 2, h2 - 2)      # conv2
    assert shapes[6] == (1600,) and shapes[7] == (128,) and shapes[-1] == (10,)  # flatten, dense1, dense2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_kernel(benchmark, case, backend):
    K, build = kernels.get(backend), CASES[case]
    got = _flat(build(K, np.random.default_rng(7))())
    others = [b for b in BACKENDS if b != backend]
    for other in others:  # the same inputs (same seed) on the other backend give the same result
        want = _flat(build(kernels.get(other), np.random.default_rng(7))())
        assert len(got) == len(want)
        for g, w in zip(got, want):
            scale = max(float(np.max(np.abs(w))), 1e-12) if w.size else 1.0
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=RTOL * scale, err_msg=f"{case} on {backend} vs {other}")
    benchmark.group = case
    benchmark.extra_info["backend"] = backend
    benchmark(build(K, np.random.default_rng(7)))
