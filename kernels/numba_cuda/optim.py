"""Adam and SGD updates in place as CUDA kernels; see ``kernels.numpy_ref.optim``."""
from __future__ import annotations

import math

from numba import cuda

from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import grid_1d
from kernels.numba_cuda.memory import _dev, _flat

__all__ = ["adam_step", "sgd_step"]


@cuda.jit(cache=True)
def _adam_k(param, grad, m, v, lr, beta1, beta2, eps, c1, c2, weight_decay):
    """One Adam update per element (Kingma & Ba, 2015, Algorithm 1), scalars in float64.

    Launch: ``grid_1d(size)`` (blocks of 256 threads), grid-stride, coalesced. Limit:
    memory bandwidth (4 arrays read, 3 written).
    """
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i] + weight_decay * param[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        param[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0):
    """One Adam update in place; see ``numpy_ref.adam_step``. Bias corrections computed on the host."""
    c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    if param.size:
        _launch.launch(_adam_k, *grid_1d(param.size), _flat(param), _flat(_dev(grad)), _flat(m),
                       _flat(v), float(lr), float(beta1), float(beta2), float(eps), c1, c2,
                       float(weight_decay))


@cuda.jit(cache=True)
def _sgd_k(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """One SGD (momentum, Nesterov) update per element; grid-stride, ``grid_1d(size)``."""
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i] + weight_decay * param[i]
        velocity[i] = momentum * velocity[i] + g
        if nesterov:
            param[i] -= lr * (g + momentum * velocity[i])
        else:
            param[i] -= lr * velocity[i]


def sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
    """One SGD (momentum, Nesterov) update in place; see ``numpy_ref.sgd_step``."""
    if param.size:
        _launch.launch(_sgd_k, *grid_1d(param.size), _flat(param), _flat(_dev(grad)),
                       _flat(velocity), float(lr), float(momentum), bool(nesterov), float(weight_decay))
