"""Solutions of notebook 9's exercises."""
from __future__ import annotations

import numpy as np


def inverted_dropout(x, p, rng):
    """Exercise 9.1: keep each unit with probability 1 - p and scale the kept ones by 1/(1 - p)."""
    mask = (rng.random(x.shape) >= p) / (1.0 - p)
    return x * mask, mask


def layernorm_backward(dout, x, gamma, eps):
    """Exercise 9.2: batch norm's derivation with the statistics over the F features of each row (Ba, Kiros &
    Hinton, 2016): with g = gamma dout, dx = s/F (F g - sum_f g - x_hat sum_f g x_hat), s = (var + eps)^-1/2;
    gamma and beta, per feature, sum over the batch."""
    f = x.shape[1]
    inv_std = 1.0 / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    x_hat = (x - x.mean(axis=1, keepdims=True)) * inv_std
    g = dout * gamma
    dx = inv_std / f * (f * g - g.sum(axis=1, keepdims=True) - x_hat * (g * x_hat).sum(axis=1, keepdims=True))
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


ANSWERS = {"9.1": inverted_dropout, "9.2": layernorm_backward}
