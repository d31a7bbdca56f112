"""Checks of notebook 4's exercises: the dense layer's backward pass, a stable softmax cross-entropy."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close
from scratchcnn.nn.layers import Dense
from scratchcnn.nn.losses import SoftmaxCrossEntropy


@checker("4.2")
def softmax_xent(answer):
    """``answer(logits, labels) -> float``, the mean loss, against ``SoftmaxCrossEntropy`` (huge logits too)."""
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.to("numpy")
    rng = np.random.default_rng(5)
    cases = (("random logits, a batch of 6", rng.standard_normal((6, 4)), rng.integers(0, 4, 6)),
             ("logits [1000, 1001, 1002]", np.array([[1000.0, 1001.0, 1002.0]]), np.array([2])),
             ("float32 logits [0, 200], true class 0", np.array([[0.0, 200.0]], np.float32), np.array([0])))
    for name, logits, labels in cases:
        with np.errstate(all="ignore"):  # a naive answer overflows; the message below says so
            got = answer(logits.copy(), labels)
        if not np.isfinite(got):
            raise ExerciseFailed(f"{name}: the loss is {got}; shift the logits by their maximum and use "
                                 "log-sum-exp instead of log(softmax)")
        want = loss_fn(logits.astype(np.float64), labels)
        expect_close("loss", float(got), want, rtol=1e-5, atol=1e-6,
                     where=f"{name}; the loss is the mean over the batch")
    return "the mean loss matches SoftmaxCrossEntropy, finite for logits of 1000 and float32 logits of 200"


@checker("4.1")
def dense_backward(answer):
    """``answer(x, W, dout) -> (dx, dW, db)`` against ``Dense.backward`` in float64."""
    rng = np.random.default_rng(6)
    dense = Dense(5, 3, rng=rng).to("numpy", np.float64)
    x, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    dense.forward(x)
    dx = dense.backward(dout).copy()
    got = answer(x.copy(), dense.params["W"].copy(), dout.copy())
    expect(isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dW, db), got {type(got).__name__}")
    for name, value, want in zip(("dx", "dW", "db"), got, (dx, dense.grads["W"], dense.grads["b"])):
        expect_close(name, value, want, rtol=1e-10, atol=1e-12, where="x (4, 5), W (5, 3), dout (4, 3)")
    return "dx, dW and db match Dense.backward"
