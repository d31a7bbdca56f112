"""Checks of notebook 12's exercises (residual networks): a strided 1x1 convolution, global average pooling
forward and backward, and a residual block's forward and backward around given layers."""
from __future__ import annotations

import numpy as np
import scipy.signal

import kernels
from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import activation as reference_activation
from kernels.numpy_ref import conv as reference_conv
from kernels.numpy_ref import pool as reference_pool
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import BatchNorm2D, Conv2D, GlobalAvgPool2D, ReLU, Residual

FORBID_CONV = {"Conv2D (scratchcnn.nn.layers)": Conv2D, "kernels.numpy_ref.conv": reference_conv,
               "scipy.signal": scipy.signal, "np.convolve": np.convolve, "np.correlate": np.correlate}
FORBID_GAP = {"GlobalAvgPool2D (scratchcnn.nn.layers)": GlobalAvgPool2D,
              "kernels.numpy_ref.pool.global_avgpool_forward": reference_pool.global_avgpool_forward,
              "kernels.numpy_ref.pool.global_avgpool_backward": reference_pool.global_avgpool_backward}
FORBID_RESIDUAL = {"Residual (scratchcnn.nn.layers)": Residual,
                   "kernels.numpy_ref.activation.add_relu_forward": reference_activation.add_relu_forward,
                   "kernels.numpy_ref.activation.add": reference_activation.add}
for _name in ("cpu",):  # the compiled backend's kernels of the same names (its Python wrappers are watched)
    if _name in kernels.available():
        _backend = kernels.get(_name)
        FORBID_GAP.update({f"kernels {_name} {f}": getattr(_backend, f)
                           for f in ("global_avgpool_forward", "global_avgpool_backward")})
        FORBID_RESIDUAL.update({f"kernels {_name} {f}": getattr(_backend, f) for f in ("add_relu_forward", "add")})


# ----------------------------------------------------------------------------------------------------------
# 12.1: a 1x1 convolution with a stride, as channel mixing.

@checker("12.1")
def conv1x1(answer):
    """``answer(x, W, b, stride) -> out`` against ``Conv2D`` with a 1x1 kernel, strides 1 and 2, odd sizes."""
    rng = np.random.default_rng(120)
    for shape, f, stride in (((2, 3, 5, 4), 3, 1), ((2, 3, 7, 5), 5, 2), ((1, 4, 6, 9), 2, 2)):
        conv = Conv2D(shape[1], f, 1, stride=stride, rng=rng).to("numpy", np.float64)
        conv.params["b"][...] = rng.standard_normal(f)
        x = rng.standard_normal(shape)
        want = conv.forward(x).copy()
        W, b = conv.params["W"].copy(), conv.params["b"].copy()
        got = run_answer(answer, x.copy(), W, b, stride, forbid=FORBID_CONV)
        where = f"x {shape}, W {W.shape}, stride {stride}"
        expect(got is not None, f"out ({where}): got None; did the function forget to return it?")
        got = np.asarray(got)
        expect(got.shape == want.shape, f"out ({where}): shape {got.shape}, expected {want.shape}: F channels out, "
                                        "and H_out = (H - 1) // stride + 1 (every stride-th pixel, starting at 0)")
        if np.allclose(got, want - b[None, :, None, None]):
            raise ExerciseFailed(f"out ({where}): the bias is missing; add b[f] to every pixel of output channel f")
        if f == shape[1] and np.allclose(got, np.einsum("nchw,cf->nfhw", x[:, :, ::stride, ::stride], W[:, :, 0, 0])
                                         + b[None, :, None, None]):
            raise ExerciseFailed(f"out ({where}): you mixed the channels with W transposed; out[n, f] = sum over c "
                                 "of W[f, c] x[n, c] (W is (F, C, 1, 1): a row per output channel)")
        expect_close("out", got, want, rtol=1e-9, atol=1e-10, where=where)
    return "matches Conv2D with a 1x1 kernel for three shapes, strides 1 and 2"


# ----------------------------------------------------------------------------------------------------------
# 12.2: global average pooling, forward and backward.

@checker("12.2")
def global_avg_pool(answer):
    """``answer(x) -> (out, backward)``: (N, C, H, W) -> (N, C), against ``GlobalAvgPool2D`` on maps with H != W."""
    rng = np.random.default_rng(121)
    for shape in ((2, 3, 4, 5), (3, 2, 7, 3), (1, 4, 2, 6)):
        layer = GlobalAvgPool2D().to("numpy", np.float64)
        x = rng.standard_normal(shape)
        want = layer.forward(x).copy()
        dout = rng.standard_normal(want.shape)
        want_dx = layer.backward(dout).copy()
        got = run_answer(answer, x.copy(), forbid=FORBID_GAP)
        expect(isinstance(got, tuple) and len(got) == 2 and callable(got[1]),
               "expected a tuple (out, backward), backward a function of dout")
        where = f"x {shape}"
        out = np.asarray(got[0])
        expect(out.shape == want.shape, f"out ({where}): shape {out.shape}, expected {want.shape}: one number per "
                                        "(image, channel), the spatial axes removed (not kept as 1 x 1)")
        if np.allclose(out, x.max(axis=(2, 3))) and not np.allclose(want, x.max(axis=(2, 3))):
            raise ExerciseFailed(f"out ({where}): you took each map's maximum; global *average* pooling takes its mean")
        expect_close("out", out, want, where=where + ": the mean of each map over H and W")
        dx = run_answer(got[1], dout.copy(), forbid=FORBID_GAP)
        expect(dx is not None, "backward returned None; did it forget to return dx?")
        dx = np.array(dx)  # a copy, as out
        expect(dx.shape == x.shape, f"dx ({where}): shape {dx.shape}, expected {x.shape}, the input's shape")
        h, w = shape[2:]
        if np.allclose(dx, want_dx * h * w):
            raise ExerciseFailed(f"dx ({where}): you forgot the 1/(H*W): each of the H*W = {h * w} pixels took a "
                                 "1/(H*W) share of the mean, so it gets dout / (H*W)")
        for wrong, what in ((h * w / h, "H"), (h * w / w, "W")):
            if h != w and np.allclose(dx, want_dx * wrong):
                raise ExerciseFailed(f"dx ({where}): you divided by {what} only; the mean is over H*W = {h * w} pixels")
        if shape[0] > 1 and np.allclose(dx, want_dx / shape[0]):
            raise ExerciseFailed(f"dx ({where}): you divided by N as well; the mean is over each map's pixels, not "
                                 "over the images")
        expect_close("dx", dx, want_dx, where=where + ": dout[n, c] / (H*W) at every pixel of map (n, c)")
    return "out and dx match GlobalAvgPool2D on maps 4x5, 7x3 and 2x6"


# ----------------------------------------------------------------------------------------------------------
# 12.3: the residual block around given layers.

def _layers(shape, c_out, stride, rng):
    """A basic block's main path and shortcut as float64 numpy-backend layers with non-trivial BN parameters:
    Conv3x3(stride)-BN-ReLU-Conv3x3-BN, and the identity or a 1x1 Conv (stride) + BN."""
    c_in = shape[1]
    main = [Conv2D(c_in, c_out, 3, stride=stride, padding=1, bias=False, init="he", rng=rng), BatchNorm2D(c_out),
            ReLU(), Conv2D(c_out, c_out, 3, padding=1, bias=False, init="he", rng=rng), BatchNorm2D(c_out)]
    shortcut = []
    if stride != 1 or c_in != c_out:
        shortcut = [Conv2D(c_in, c_out, 1, stride=stride, bias=False, init="he", rng=rng), BatchNorm2D(c_out)]
    for layer in main + shortcut:
        layer.to("numpy", np.float64)
        for key in ("gamma", "beta"):
            if key in layer.params:
                layer.params[key][...] = rng.standard_normal(layer.params[key].shape)
    return main, shortcut


def _run(path, x):
    for layer in path:
        x = layer.forward(x)
    return x


def _back(path, d):
    for layer in reversed(path):
        d = layer.backward(d)
    return d


@checker("12.3")
def residual_block(answer):
    """``answer(main, shortcut)`` -> a block with ``forward(x)`` and ``backward(dout) -> dx``, against
    ``Residual`` built from the same layers (identity and 1x1 projection shortcut), and central differences."""
    rng = np.random.default_rng(122)
    for shape, c_out, stride in (((2, 3, 5, 5), 3, 1), ((2, 3, 6, 5), 4, 2)):
        main, shortcut = _layers(shape, c_out, stride, rng)
        kind = "identity shortcut" if not shortcut else "1x1 projection shortcut, stride 2"
        where = f"x {shape}, {kind}"
        x = rng.standard_normal(shape)
        reference = Residual(main, shortcut).to("numpy", np.float64)
        want = reference.forward(x).copy()
        dout = rng.standard_normal(want.shape)
        want_dx = reference.backward(dout).copy()
        want_grads = {key: np.array(value) for key, value in reference.grads.items()}
        # The mistakes named below, computed from the same layers.
        f_x, s_x = _run(main, x).copy(), (_run(shortcut, x) if shortcut else x).copy()
        block = run_answer(answer, main, shortcut, forbid=FORBID_RESIDUAL)
        out = run_answer(block.forward, x.copy(), forbid=FORBID_RESIDUAL)
        expect(out is not None, "forward returned None; did it forget to return the output?")
        out = np.array(out)  # a copy: the layers' buffers, which a returned array may share, are reused below
        expect(out.shape == want.shape, f"out ({where}): shape {out.shape}, expected {want.shape}")
        if np.allclose(out, np.maximum(f_x, 0) + s_x):
            raise ExerciseFailed(f"out ({where}): you applied ReLU before the add (relu(F(x)) + x); the block adds "
                                 "first, then applies ReLU to the sum: relu(F(x) + S(x))")
        if np.allclose(out, f_x + s_x):
            raise ExerciseFailed(f"out ({where}): no ReLU after the sum; out = relu(F(x) + S(x))")
        if np.allclose(out, np.maximum(f_x, 0)):
            raise ExerciseFailed(f"out ({where}): the shortcut is missing; add S(x) (x itself for the identity) to "
                                 "the main path's output before the ReLU")
        expect_close("out", out, want, where=where + ": relu(F(x) + S(x))")
        dx = run_answer(block.backward, dout.copy(), forbid=FORBID_RESIDUAL)
        expect(dx is not None, "backward returned None; did it forget to return dx?")
        dx = np.array(dx)  # a copy, as out
        expect(dx.shape == x.shape, f"dx ({where}): shape {dx.shape}, expected {x.shape}")
        grads = {key: np.array(value) for key, value in reference.grads.items()}  # what the answer's backward left
        d = dout * (want > 0)
        _run(main, x), _run(shortcut, x)
        d_main = _back(main, d).copy()
        d_short = _back(shortcut, d).copy() if shortcut else d
        _run(main, x), _run(shortcut, x)
        d_unmasked = _back(main, dout).copy() + (_back(shortcut, dout) if shortcut else dout)
        if np.allclose(dx, d_main):
            raise ExerciseFailed(f"dx ({where}): only the main path's gradient; you forgot the shortcut's. The sum "
                                 "sends d = dout * (out > 0) down both paths, and dx adds what comes back from each")
        if np.allclose(dx, d_unmasked):
            raise ExerciseFailed(f"dx ({where}): you ignored the ReLU after the sum; multiply dout by (out > 0) "
                                 "before sending it down the two paths")
        expect_close("dx", dx, want_dx, where=where + ": dF/dx^T d + dS/dx^T d, d = dout * (out > 0)")
        for key, value in want_grads.items():
            expect_close(f"the gradient of {key}", grads[key], value, where=where + "; call backward on every layer "
                                                                                   "of both paths, in reverse order")
        if not shortcut:  # central differences of the answer's own forward, float64
            def run():
                return np.asarray(block.forward(x))
            numeric = numerical_grad(run, x, dout)
            expect_close("dx", dx, numeric, rtol=1e-5, atol=1e-7, where=where + ": against central differences")
    return ("out, dx and every parameter's gradient match Residual (identity and projection shortcuts); dx matches "
            "central differences")
