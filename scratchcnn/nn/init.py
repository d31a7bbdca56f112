"""Weight initialisation from a seeded ``numpy.random.Generator``.

Both functions return float32 NumPy arrays on the host; layers move them to
their backend.
"""
from __future__ import annotations

import numpy as np

__all__ = ["he_normal", "glorot_uniform", "initial_weights", "NO_INIT"]


class _NoInit:
    """The type of ``NO_INIT``."""

    def __repr__(self) -> str:
        return "NO_INIT"


# Passed as a layer's ``rng``: allocate no parameters at all, because they are loaded next from a
# file (``Sequential.from_config(..., initialize=False)``); ``param_shapes()`` says what they must be.
NO_INIT = _NoInit()


def he_normal(shape, fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """Normal(0, 2/fan_in) weights, which keep activation variance constant through ReLUs.

    He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers", ICCV, Eq. (10).
    """
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def glorot_uniform(shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform(-a, a) weights with ``a = sqrt(6 / (fan_in + fan_out))``.

    Glorot & Bengio (2010), "Understanding the difficulty of training deep
    feedforward neural networks", AISTATS, Eq. (16).
    """
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def initial_weights(init: str, shape, fan_in: int, fan_out: int, rng: np.random.Generator):
    """Dispatch on ``init`` ("he" or "glorot"); raise ValueError for any other name."""
    if init == "he":
        return he_normal(shape, fan_in, rng)
    if init == "glorot":
        return glorot_uniform(shape, fan_in, fan_out, rng)
    raise ValueError(f"unknown init {init!r}; expected 'he' or 'glorot'")
