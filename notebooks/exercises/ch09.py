"""Checks of notebook 9's exercises: inverted dropout, the batch-normalisation backward pass."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import BatchNorm1D


@checker("9.1")
def inverted_dropout(answer):
    """``answer(x, p, rng) -> (out, mask)``: mask 0 or 1/(1-p), drop rate p, out = x * mask, mean kept."""
    for p in (0.25, 0.5):
        x = np.random.default_rng(13).uniform(1.0, 2.0, (200, 500))
        got = answer(x.copy(), p, np.random.default_rng(14))
        expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (out, mask), got {type(got).__name__}")
        out, mask = (np.asarray(a, np.float64) for a in got)
        expect(out.shape == x.shape and mask.shape == x.shape, f"out {out.shape} and mask {mask.shape}: expected {x.shape}")
        values = set(np.unique(mask).round(12).tolist())
        if values == {0.0, 1.0}:
            raise ExerciseFailed(f"p = {p}: the mask holds 0 and 1; inverted dropout scales the kept units by "
                                 f"1/(1-p) = {1 / (1 - p):g} during training, so nothing changes at inference")
        expect(values <= {0.0, round(1 / (1 - p), 12)}, f"p = {p}: mask values {sorted(values)[:4]}, "
                                                         f"expected only 0 and 1/(1-p) = {1 / (1 - p):g}")
        dropped = float(np.mean(mask == 0))
        expect(abs(dropped - p) < 0.01, f"p = {p}: {dropped:.3f} of the units were dropped, expected about {p} "
                                        "(p is the probability of dropping, not of keeping)")
        expect_close("out", out, x * mask, rtol=1e-12, atol=1e-12, where=f"p = {p}: out = x * mask")
        expect(abs(out.mean() / x.mean() - 1) < 0.01, f"p = {p}: the mean changed from {x.mean():.3f} to "
                                                      f"{out.mean():.3f}; the expectation must be kept")
    return "drop rate p, kept units scaled by 1/(1-p), the mean activation unchanged (p = 0.25 and 0.5)"


@checker("9.2")
def batchnorm_backward(answer):
    """``answer(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` (training mode, (N, F)) against BatchNorm1D."""
    rng = np.random.default_rng(15)
    bn = BatchNorm1D(4).to("numpy", np.float64)
    bn.params["gamma"][...] = rng.uniform(0.5, 2.0, 4)
    bn.params["beta"][...] = rng.standard_normal(4)
    x, dout = 3.0 + 2.0 * rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    bn.forward(x, training=True)
    dx = bn.backward(dout).copy()
    got = answer(dout.copy(), x.copy(), bn.params["gamma"].copy(), bn.eps)
    expect(isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dgamma, dbeta), got {type(got).__name__}")
    for name, value, want in zip(("dgamma", "dbeta"), got[1:], (bn.grads["gamma"], bn.grads["beta"])):
        expect_close(name, value, want, rtol=1e-8, atol=1e-10, where="x (6, 4)")
    numeric = numerical_grad(lambda: bn.forward(x, training=True), x, dout)
    if np.allclose(got[0], dout * bn.params["gamma"] / np.sqrt(x.var(axis=0) + bn.eps), atol=1e-8):
        raise ExerciseFailed("dx: you treated the batch mean and variance as constants; they depend on every x "
                             "of the batch, which adds the two terms with dbeta and dgamma")
    expect_close("dx", got[0], dx, rtol=1e-8, atol=1e-10, where="x (6, 4), training mode")
    expect_close("dx against central differences", got[0], numeric, rtol=1e-5, atol=1e-8)
    return "dx, dgamma and dbeta match BatchNorm1D.backward, and dx matches central differences"
