"""Checks of notebook 9's exercises: inverted dropout (random, from the given generator), the layer
normalisation backward pass (derived from batch norm's)."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import activation as reference_activation
from kernels.numpy_ref import norm as reference_norm
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import BatchNorm1D, BatchNorm2D, Dropout

FORBID_9_1 = {"Dropout (scratchcnn.nn.layers)": Dropout, "kernels.numpy_ref.activation": reference_activation}
FORBID_9_2 = {"BatchNorm1D": BatchNorm1D, "BatchNorm2D": BatchNorm2D, "kernels.numpy_ref.norm": reference_norm}


def _mask(answer, x, p, seed):
    got = run_answer(answer, x.copy(), p, np.random.default_rng(seed), forbid=FORBID_9_1)
    expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (out, mask), got {type(got).__name__}")
    out, mask = (np.asarray(a, np.float64) for a in got)
    expect(out.shape == x.shape and mask.shape == x.shape, f"out {out.shape} and mask {mask.shape}: expected {x.shape}")
    return out, mask


@checker("9.1")
def inverted_dropout(answer):
    """``answer(x, p, rng) -> (out, mask)``: mask 0 or 1/(1-p), drawn from ``rng`` independently for every
    unit (drop rate p in every row and every column), out = x * mask, mean kept."""
    rows, cols = 200, 500
    for p in (0.25, 0.5):
        x = np.random.default_rng(13).uniform(1.0, 2.0, (rows, cols))
        out, mask = _mask(answer, x, p, 14)
        values = set(np.unique(mask).round(12).tolist())
        if values == {0.0, 1.0}:
            raise ExerciseFailed(f"p = {p}: the mask holds 0 and 1; inverted dropout scales the kept units by "
                                 f"1/(1-p) = {1 / (1 - p):g} during training, so nothing changes at inference")
        if values == {0.0, round(1 / p, 12)} and p != 0.5:
            raise ExerciseFailed(f"p = {p}: the kept units are scaled by 1/p = {1 / p:g}: p is the probability of "
                                 "dropping a unit, not of keeping it; keep with probability 1 - p, scale by 1/(1-p)")
        expect(values <= {0.0, round(1 / (1 - p), 12)}, f"p = {p}: mask values {sorted(values)[:4]}, "
                                                         f"expected only 0 and 1/(1-p) = {1 / (1 - p):g}")
        dropped = mask == 0
        # Each row and each column of an independent mask drops about p of its units (binomial spread).
        for axis, name, count in ((0, "column", rows), (1, "row", cols)):
            rates = dropped.mean(axis=axis)
            limit = 6 * np.sqrt(p * (1 - p) / count)
            worst = int(np.argmax(np.abs(rates - p)))
            expect(np.abs(rates - p).max() < limit,
                   f"p = {p}: {name} {worst} drops {rates[worst]:.2f} of its units, expected about {p}: the mask "
                   f"is not random unit by unit (the same units in every {'row' if axis == 0 else 'column'}, or a "
                   "fixed block of units?); draw one random number per unit")
        expect(abs(dropped.mean() - p) < 0.01, f"p = {p}: {dropped.mean():.3f} of the units were dropped, expected "
                                               f"about {p} (p is the probability of dropping, not of keeping)")
        _, again = _mask(answer, x, p, 14)
        expect(np.array_equal(again, mask), f"p = {p}: two calls with generators seeded alike gave different masks: "
                                            "draw the mask from the rng argument (rng.random), not np.random")
        _, other = _mask(answer, x, p, 15)
        expect(not np.array_equal(other, mask), f"p = {p}: generators with different seeds gave the same mask: your "
                                                "answer ignores the rng argument (a fixed seed?)")
        expect_close("out", out, x * mask, rtol=1e-12, atol=1e-12, where=f"p = {p}: out = x * mask")
        expect(abs(out.mean() / x.mean() - 1) < 0.01, f"p = {p}: the mean changed from {x.mean():.3f} to "
                                                      f"{out.mean():.3f}; the expectation must be kept")
    return ("drop rate p in every row and column, drawn from the given generator, kept units scaled by 1/(1-p), "
            "the mean activation unchanged (p = 0.25 and 0.5)")


def _layernorm(x, gamma, beta, eps):
    """Layer norm forward: each row of x (N, F) standardised over its F features, then gamma * x_hat + beta."""
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@checker("9.2")
def layernorm_backward(answer):
    """``answer(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` for layer normalisation over the features of
    each example, x (N, F), against central differences."""
    rng = np.random.default_rng(15)
    x, dout = 3.0 + 2.0 * rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    gamma, beta, eps = rng.uniform(0.5, 2.0, 5), rng.standard_normal(5), 1e-5
    want = [numerical_grad(lambda: _layernorm(x, gamma, beta, eps), a, dout) for a in (x, gamma, beta)]
    got = run_answer(answer, dout.copy(), x.copy(), gamma.copy(), eps, forbid=FORBID_9_2)
    expect(isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dgamma, dbeta), got {type(got).__name__}")
    dx, dgamma, dbeta = (np.asarray(a, np.float64) for a in got)
    expect(dgamma.shape == (5,) and dbeta.shape == (5,),
           f"dgamma {dgamma.shape} and dbeta {dbeta.shape}: expected (5,): gamma and beta are per feature and "
           "shared by every example, so their gradients sum over the batch")
    expect_close("dgamma", dgamma, want[1], rtol=1e-6, atol=1e-8, where="x (6, 5); sum over the batch of dout * x_hat")
    expect_close("dbeta", dbeta, want[2], rtol=1e-6, atol=1e-8, where="x (6, 5); sum over the batch of dout")
    s = 1 / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    if np.allclose(dx, dout * gamma * s, atol=1e-8):
        raise ExerciseFailed("dx: you treated the mean and variance as constants; they depend on every feature "
                             "of the example, which adds the two terms through mu and sigma^2")
    s_batch = 1 / np.sqrt(x.var(axis=0) + eps)
    x_hat_batch = (x - x.mean(axis=0)) * s_batch
    g_hat = dout * gamma
    batch_dx = s_batch / 6 * (6 * g_hat - g_hat.sum(0) - x_hat_batch * (g_hat * x_hat_batch).sum(0))
    if np.allclose(dx, batch_dx, atol=1e-8):
        raise ExerciseFailed("dx: that is batch norm's gradient (statistics over the batch, axis 0); layer norm "
                             "takes them over the features of each example (axis 1), so the sums run over axis 1")
    expect_close("dx", dx, want[0], rtol=1e-6, atol=1e-8, where="x (6, 5), against central differences")
    return "dx, dgamma and dbeta of layer normalisation match central differences"
