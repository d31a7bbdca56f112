"""Solutions of notebook 6's exercises."""
from __future__ import annotations

import numpy as np


def nesterov_step(theta, g, v, lr, mu):
    """Exercise 6.1: Sutskever et al. (2013), Eq. 3-4, rewritten for phi = theta + mu v (the look-ahead point,
    where the gradient is taken): v <- mu v + g; phi <- phi - lr (g + mu v), with the new v."""
    v = mu * v + g
    return theta - lr * (g + mu * v), v


def adam_step(theta, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """Exercise 6.2: Kingma & Ba (2015), Algorithm 1, on the gradient of L + weight_decay/2 |theta|^2; the bias
    correction divides by the weights' sum (1 - beta) (1 + beta + ... + beta^(t-1)) = 1 - beta^t."""
    g = g + weight_decay * theta
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


ANSWERS = {"6.1": nesterov_step, "6.2": adam_step}
