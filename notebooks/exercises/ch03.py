"""Checks of notebook 3's exercises: the leaky ReLU backward pass, the max-pooling backward pass."""
from __future__ import annotations

import numpy as np

from exercises import checker, expect_close
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import MaxPool2D


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
        expect_close("dx", answer(dout, x.copy(), k), want,
                     where=f"x {x.shape}, k = {k}" + (", windows with ties: the first maximum in row-major "
                                                      "order wins" if x is ties else ""))
    return "dx matches MaxPool2D.backward for 2x2 and 3x3 windows, ties included"


@checker("3.1")
def leaky_relu_backward(answer):
    """``answer(dout, x, alpha) -> dx`` against central differences of ``where(x > 0, x, alpha*x)``."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5))
    x += np.sign(x) * 0.01  # away from the kink
    dout = rng.standard_normal(x.shape)
    for alpha in (0.01, 0.2):
        want = numerical_grad(lambda: np.where(x > 0, x, alpha * x), x, dout)
        expect_close("dx", answer(dout, x.copy(), alpha), want, rtol=1e-6, atol=1e-8, where=f"alpha = {alpha}")
    return "dx matches central differences for alpha = 0.01 and 0.2"
