"""Optimizer updates, applied to a parameter in place: Adam and SGD with (Nesterov) momentum."""
from __future__ import annotations

import numpy as np

__all__ = ["adam_step", "sgd_step"]


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0):
    """One Adam update of ``param`` in place (Kingma & Ba, 2015, Algorithm 1).

    Parameters
    ----------
    param, grad, m, v : ndarray, same shape and dtype
        Parameter, its gradient, and the first and second moment estimates
        (updated in place).
    lr : float
        Step size (per step).
    beta1, beta2 : float in [0, 1)
        Decay rates of the moment estimates.
    eps : float
        Added to ``sqrt(v_hat)`` in the denominator, as in Algorithm 1.
    t : int >= 1
        Number of this step, for the bias corrections ``1 - beta**t``.
    weight_decay : float
        L2 penalty added to the gradient (``g = grad + weight_decay*param``), as
        PyTorch's ``Adam(weight_decay=...)``.
    """
    g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)


def sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
    """One SGD update of ``param`` in place, with optional (Nesterov) momentum.

    ``g = grad + weight_decay*param``; ``velocity = momentum*velocity + g``;
    ``param -= lr * (g + momentum*velocity if nesterov else velocity)``
    (Sutskever et al., 2013, "On the importance of initialization and momentum
    in deep learning", ICML, Eq. 1-4, in PyTorch's formulation). With
    ``momentum = 0`` this is plain gradient descent. All arrays share one shape.
    """
    g = grad + weight_decay * param if weight_decay else grad
    velocity *= momentum
    velocity += g
    param -= lr * (g + momentum * velocity if nesterov else velocity)
