"""Solutions of notebook 6's exercises."""
from __future__ import annotations

import numpy as np


def momentum_step(theta, g, v, lr, mu):
    """Exercise 6.1: v <- mu v + g; theta <- theta - lr v (PyTorch's form of Sutskever et al., 2013)."""
    v = mu * v + g
    return theta - lr * v, v


def adam_step(theta, g, m, v, t, lr, beta1, beta2, eps):
    """Exercise 6.2: Kingma & Ba (2015), Algorithm 1, eps added to sqrt(v_hat)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


ANSWERS = {"6.1": momentum_step, "6.2": adam_step}
