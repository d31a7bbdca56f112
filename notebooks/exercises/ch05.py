"""Checks of notebook 5's exercises: the convolution's input and weight gradients, derived by hand."""
from __future__ import annotations

import numpy as np

from exercises import checker, expect_close
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import Conv2D


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
    W = conv.params["W"]
    got = answer(dout.copy(), W.copy())
    expect_close("dx", got, dx, rtol=1e-8, atol=1e-10, where="x (2, 3, 5, 6), W (2, 3, 3, 3), stride 1, no padding")
    numeric = numerical_grad(lambda: conv.forward(x), x, dout)
    expect_close("dx against central differences", got, numeric, rtol=1e-6, atol=1e-8)
    return "dx matches Conv2D.backward and central differences"


@checker("5.2")
def conv_backward_dW(answer):
    """``answer(x, dout) -> dW`` against ``Conv2D.grads["W"]`` and central differences."""
    conv, x, dout, _ = _conv_case(8)
    got = answer(x.copy(), dout.copy())
    expect_close("dW", got, conv.grads["W"], rtol=1e-8, atol=1e-10,
                 where="x (2, 3, 5, 6), dout (2, 2, 3, 4): sum over the batch too")
    numeric = numerical_grad(lambda: conv.forward(x), conv.params["W"], dout)
    expect_close("dW against central differences", got, numeric, rtol=1e-6, atol=1e-8)
    return "dW matches Conv2D's gradient and central differences"
