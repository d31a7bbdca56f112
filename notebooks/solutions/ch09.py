"""Solutions of notebook 9's exercises."""
from __future__ import annotations

import numpy as np


def inverted_dropout(x, p, rng):
    """Exercise 9.1: keep each unit with probability 1 - p and scale the kept ones by 1/(1 - p)."""
    mask = (rng.random(x.shape) >= p) / (1.0 - p)
    return x * mask, mask


def batchnorm_backward(dout, x, gamma, eps):
    """Exercise 9.2: Ioffe & Szegedy (2015), Algorithm 1, differentiated; M = batch size.

    dx = gamma / (M sqrt(var + eps)) * (M dout - dbeta - x_hat dgamma).
    """
    m = x.shape[0]
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + eps)
    x_hat = (x - x.mean(axis=0)) * inv_std
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma * inv_std / m * (m * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


ANSWERS = {"9.1": inverted_dropout, "9.2": batchnorm_backward}
