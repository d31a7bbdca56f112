"""Checks of notebook 5's exercises: the convolution's input and weight gradients, derived by hand."""
from __future__ import annotations

import numpy as np
from scipy.signal import correlate2d

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import conv as reference_conv
from kernels.numpy_ref import conv_bn as reference_conv_bn
from kernels.numpy_ref import gemm as reference_gemm
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import Conv2D

FORBID = {"Conv2D (scratchcnn.nn.layers)": Conv2D, "kernels.numpy_ref.conv (im2col, col2im)": reference_conv,
          "kernels.numpy_ref.conv_bn": reference_conv_bn, "kernels.numpy_ref.gemm": reference_gemm}


def _conv_case(seed):
    """A float64 Conv2D (stride 1, no padding) with its forward and backward done: (layer, x, dout, dx)."""
    rng = np.random.default_rng(seed)
    conv = Conv2D(3, 2, 3, rng=rng).to("numpy", np.float64)
    x = rng.standard_normal((2, 3, 5, 6))
    dout = rng.standard_normal(conv.forward(x).shape)
    dx = conv.backward(dout).copy()
    return conv, x, dout, dx


@checker("5.1")
def conv_backward_dx(answer):
    """``answer(dout, W) -> dx`` against ``Conv2D.backward`` and central differences."""
    conv, x, dout, dx = _conv_case(7)
    W = conv.params["W"].copy()
    numeric = numerical_grad(lambda: conv.forward(x), x, dout)
    got = np.asarray(run_answer(answer, dout.copy(), W.copy(), forbid=FORBID))
    expect(got.shape == dx.shape, f"dx: shape {got.shape}, expected {dx.shape}: the full convolution of an "
                                  "(H_out, W_out) map with a k x k kernel is (H_out + k - 1, W_out + k - 1)")
    unflipped = np.zeros_like(dx)
    for n in range(dout.shape[0]):
        for c in range(W.shape[1]):
            for f in range(W.shape[0]):
                unflipped[n, c] += correlate2d(dout[n, f], W[f, c], mode="full")
    if np.allclose(got, unflipped):
        raise ExerciseFailed("dx: you correlated dout with the kernel as it is; the full convolution flips it "
                             "(W[f, c, ::-1, ::-1]), which is what the derivation gives")
    if np.allclose(got[:, :, :, :], dx / W.shape[0], atol=1e-10):
        raise ExerciseFailed("dx: you averaged over the filters; each filter adds its own contribution (a sum)")
    expect_close("dx", got, dx, rtol=1e-8, atol=1e-10,
                 where="x (2, 3, 5, 6), W (2, 3, 3, 3), stride 1, no padding; sum over the filters f")
    expect_close("dx against central differences", got, numeric, rtol=1e-6, atol=1e-8)
    return "dx matches Conv2D.backward and central differences"


@checker("5.2")
def conv_backward_dW(answer):
    """``answer(x, dout) -> dW`` against ``Conv2D.grads["W"]`` and central differences."""
    conv, x, dout, _ = _conv_case(8)
    want = conv.grads["W"].copy()
    numeric = numerical_grad(lambda: conv.forward(x), conv.params["W"], dout)
    got = np.asarray(run_answer(answer, x.copy(), dout.copy(), forbid=FORBID))
    expect(got.shape == want.shape, f"dW: shape {got.shape}, expected {want.shape} (F, C, k, k)")
    if np.allclose(got, want[..., ::-1, ::-1]):
        raise ExerciseFailed("dW: your kernel gradient is flipped; the forward pass correlates, so dW[f, c] is the "
                             "valid *correlation* of x[n, c] with dout[n, f] (no flip)")
    first = np.zeros_like(want)
    for f in range(want.shape[0]):
        for c in range(want.shape[1]):
            first[f, c] = correlate2d(x[0, c], dout[0, f], mode="valid")
    if np.allclose(got, first):
        raise ExerciseFailed("dW: you used the first image only; the weights are shared by every image of the "
                             "batch, so sum over n")
    expect_close("dW", got, want, rtol=1e-8, atol=1e-10, where="x (2, 3, 5, 6), dout (2, 2, 3, 4): sum over the batch")
    expect_close("dW against central differences", got, numeric, rtol=1e-6, atol=1e-8)
    return "dW matches Conv2D's gradient and central differences"
