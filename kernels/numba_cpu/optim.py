"""Adam and SGD updates in place, parallel over elements; see ``kernels.numpy_ref.optim``."""
from __future__ import annotations

import math

from numba import njit, prange

__all__ = ["adam_step", "sgd_step"]


@njit(parallel=True, cache=True)
def _adam_core(param, grad, m, v, lr, beta1, beta2, eps, c1, c2, weight_decay):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        param[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0):
    """One Adam update in place (Kingma & Ba, 2015, Algorithm 1); see ``numpy_ref.adam_step``."""
    c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    _adam_core(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), float(lr),
               float(beta1), float(beta2), float(eps), c1, c2, float(weight_decay))


@njit(parallel=True, cache=True)
def _sgd_core(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        velocity[i] = momentum * velocity[i] + g
        param[i] -= lr * (g + momentum * velocity[i] if nesterov else velocity[i])


def sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
    """One SGD (momentum, Nesterov) update in place; see ``numpy_ref.sgd_step``."""
    _sgd_core(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), float(lr),
              float(momentum), bool(nesterov), float(weight_decay))
