"""Checks of notebook 4's exercises: a dense layer applied at every position (derived), a stable softmax loss."""
from __future__ import annotations

import numpy as np
import scipy.special

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import gemm as reference_gemm
from kernels.numpy_ref import loss as reference_loss
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import Dense
from scratchcnn.nn.losses import SoftmaxCrossEntropy

FORBID_4_1 = {"Dense (scratchcnn.nn.layers)": Dense, "kernels.numpy_ref.gemm": reference_gemm}
FORBID_4_2 = {"SoftmaxCrossEntropy (scratchcnn.nn.losses)": SoftmaxCrossEntropy,
              "kernels.numpy_ref.loss": reference_loss, "scipy.special.logsumexp": scipy.special.logsumexp,
              "scipy.special.log_softmax": scipy.special.log_softmax, "scipy.special.softmax": scipy.special.softmax}

# Each case names what it catches when the loss is not finite.
_CASES = (
    ("random logits, a batch of 6", None, ""),
    ("logits [1000, 1001, 1002], true class 2", ([[1000.0, 1001.0, 1002.0]], [2]),
     "exp(1000) overflows: shift the logits by their maximum before exponentiating"),
    ("logits [0, 1000], true class 0", ([[0.0, 1000.0]], [0]),
     "the true class's probability underflows to 0 and log(0) = -inf: never take log(softmax); use "
     "log p_y = (z_y - m) - log sum_j exp(z_j - m)"),
    ("logits [-1000, 0, 1000], true class 1", ([[-1000.0, 0.0, 1000.0]], [1]),
     "after your shift a logit is still huge: shift by the *maximum* (so every shifted logit is <= 0), not the mean"),
    ("float32 logits [0, 200], true class 0", None, "float32 overflows above exp(88): shift by the maximum"),
)


@checker("4.2")
def softmax_xent(answer):
    """``answer(logits, labels) -> float``, the mean loss, against ``SoftmaxCrossEntropy``, on logits that
    overflow a naive form, a shift by the mean, and log(softmax) after the shift."""
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.to("numpy")
    rng = np.random.default_rng(5)
    for name, values, hint in _CASES:
        if name.startswith("random"):
            logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
        elif name.startswith("float32"):
            logits, labels = np.array([[0.0, 200.0]], np.float32), np.array([0])
        else:
            logits, labels = np.array(values[0]), np.array(values[1])
        want = loss_fn(logits.astype(np.float64), labels)
        with np.errstate(all="ignore"):  # a naive answer overflows; the message below says so
            got = run_answer(answer, logits.copy(), labels, forbid=FORBID_4_2)
        if not np.isfinite(got):
            raise ExerciseFailed(f"{name}: the loss is {got}, expected {want:.4g}; {hint}")
        if len(labels) > 1 and np.isclose(float(got), want * len(labels), rtol=1e-5):
            raise ExerciseFailed(f"{name}: you summed the losses of the batch; the loss is their mean")
        expect_close("loss", float(got), want, rtol=1e-5, atol=1e-6,
                     where=f"{name}; the loss is the mean over the batch")
    return ("the mean loss matches SoftmaxCrossEntropy, finite for logits of 1000, for logits 2000 apart "
            "and for float32 logits of 200")


@checker("4.1")
def dense_backward(answer):
    """``answer(x, W, dout) -> (dx, dW, db)`` for ``out = x W + b`` at every position, x (N, T, F_in),
    against central differences."""
    rng = np.random.default_rng(6)
    x, W, b = rng.standard_normal((4, 3, 5)), rng.standard_normal((5, 2)), rng.standard_normal(2)
    dout = rng.standard_normal((4, 3, 2))
    forward = lambda: x @ W + b  # noqa: E731  (numerical_grad perturbs x, W and b in place)
    want = [numerical_grad(forward, a, dout) for a in (x, W, b)]
    got = run_answer(answer, x.copy(), W.copy(), dout.copy(), forbid=FORBID_4_1)
    expect(isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dW, db), got {type(got).__name__}")
    dx, dW, db = (np.asarray(a, np.float64) for a in got)
    expect(dW.shape == W.shape, f"dW: shape {dW.shape}, expected {W.shape}: W is shared by every example and "
                                "position, so dW sums x^T dout over both N and T")
    expect(db.shape == b.shape, f"db: shape {db.shape}, expected {b.shape}: b is added at every example and "
                                "position, so db sums dout over both N and T")
    if np.allclose(db, want[2] / 12) or np.allclose(dW, want[1] / 12):
        raise ExerciseFailed("dW or db is the mean over the N*T = 12 positions; the loss adds every position's "
                             "contribution, so the gradient is their sum")
    if np.allclose(dW, x[:, 0].T @ dout[:, 0]):
        raise ExerciseFailed("dW: you used the first position only; sum x[n, t]^T dout[n, t] over every n and t")
    for name, value, expected in zip(("dx", "dW", "db"), (dx, dW, db), want):
        expect_close(name, value, expected, rtol=1e-6, atol=1e-8,
                     where="x (4, 3, 5), W (5, 2), dout (4, 3, 2), against central differences")
    return "dx, dW and db of a dense layer applied at 3 positions match central differences"
