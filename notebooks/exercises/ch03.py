"""Checks of notebook 3's exercises: the PReLU backward pass (derived), the max-pooling backward pass."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import activation as reference_activation
from kernels.numpy_ref import pool as reference_pool
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import MaxPool2D, ReLU

FORBID_3_1 = {"ReLU (scratchcnn.nn.layers)": ReLU, "kernels.numpy_ref.activation": reference_activation}
FORBID_3_2 = {"MaxPool2D (scratchcnn.nn.layers)": MaxPool2D, "kernels.numpy_ref.pool": reference_pool}


@checker("3.2")
def maxpool_backward(answer):
    """``answer(dout, x, k) -> dx`` for k x k windows with stride k, against ``MaxPool2D.backward``."""
    rng = np.random.default_rng(3)
    ties = np.array([[5.0, 1.0, 2.0, 2.0], [5.0, 2.0, 2.0, 2.0]]).reshape(1, 1, 2, 4)  # ties go to the first
    for x, k in ((rng.standard_normal((2, 3, 4, 6)), 2), (rng.standard_normal((1, 2, 6, 6)), 3), (ties, 2)):
        pool = MaxPool2D(k).to("numpy", np.float64)
        out = pool.forward(x)
        dout = rng.standard_normal(out.shape)
        want = pool.backward(dout).copy()
        got = run_answer(answer, dout, x.copy(), k, forbid=FORBID_3_2)
        spread = np.repeat(np.repeat(dout, k, axis=2), k, axis=3)
        if np.shape(got) == want.shape and (np.allclose(got, spread / k**2) or np.allclose(got, spread)):
            raise ExerciseFailed(f"dx (k = {k}): you spread each dout over its whole window (average pooling's "
                                 "backward); max-pooling sends it to the window's maximum only, 0 elsewhere")
        expect_close("dx", got, want,
                     where=f"x {x.shape}, k = {k}" + (", windows with ties: the first maximum in row-major "
                                                      "order wins (np.argmax)" if x is ties else ""))
    return "dx matches MaxPool2D.backward for 2x2 and 3x3 windows, ties included"


def _prelu(x, alpha):
    """PReLU forward: x where x > 0, alpha[c] * x elsewhere; x (N, C, H, W), alpha (C,)."""
    return np.where(x > 0, x, alpha[None, :, None, None] * x)


@checker("3.1")
def prelu_backward(answer):
    """``answer(dout, x, alpha) -> (dx, dalpha)`` against central differences of the PReLU forward."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 5))
    x += np.sign(x) * 0.01  # away from the kink
    dout = rng.standard_normal(x.shape)
    alpha = np.array([0.1, 0.3])
    want_dx = numerical_grad(lambda: _prelu(x, alpha), x, dout)
    want_dalpha = numerical_grad(lambda: _prelu(x, alpha), alpha, dout)
    got = run_answer(answer, dout.copy(), x.copy(), alpha.copy(), forbid=FORBID_3_1)
    expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (dx, dalpha), got {type(got).__name__}")
    dx, dalpha = (np.asarray(a, np.float64) for a in got)
    if dx.shape == x.shape and np.allclose(dx, dout * (x > 0)):
        raise ExerciseFailed("dx: you used ReLU's slope (0 for x <= 0); PReLU's slope there is alpha[c]")
    expect_close("dx", dx, want_dx, rtol=1e-6, atol=1e-8, where="x (3, 2, 4, 5), alpha (2,)")
    expect(dalpha.shape == alpha.shape,
           f"dalpha: shape {dalpha.shape}, expected {alpha.shape}: one alpha per channel is shared by every image "
           "and position, so its gradient sums dout * x over N, H and W (where x <= 0)")
    if np.allclose(dalpha, (dout * x).sum(axis=(0, 2, 3))):
        raise ExerciseFailed("dalpha: you summed dout * x over every position; alpha only multiplies the x <= 0 "
                             "ones, so only they count")
    expect_close("dalpha", dalpha, want_dalpha, rtol=1e-6, atol=1e-8, where="against central differences")
    return "dx and the per-channel dalpha match central differences"
