"""Learning-rate schedules, as functions of training progress."""
from __future__ import annotations

import math

__all__ = ["SCHEDULES", "learning_rate"]

SCHEDULES = ("constant", "step", "cosine", "onecycle")

# One-cycle shape, PyTorch OneCycleLR's defaults: warm up for 30% of the steps from lr/25, end at lr/25/1e4.
ONECYCLE_WARMUP, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def learning_rate(schedule: str, base_lr: float, epoch: int, step: int, steps_per_epoch: int,
                  epochs: int) -> float:
    """The learning rate of step ``step`` (0-based) of epoch ``epoch`` (0-based).

    - ``constant``: ``base_lr``.
    - ``step``: ``base_lr`` divided by 10 at 50% and again at 75% of the epochs
      (the milestones of He et al., 2016, "Deep Residual Learning", Section 4.2,
      expressed as fractions of the run).
    - ``cosine``: ``base_lr * (1 + cos(pi * t)) / 2``, ``t`` the fraction of all
      steps done, updated every step (Loshchilov & Hutter, 2017, "SGDR", Eq. 5,
      one cycle, no restart, eta_min = 0).
    - ``onecycle``: rises from ``base_lr / 25`` to ``base_lr`` over the first 30%
      of all steps, then falls to ``base_lr / 25 / 1e4``, both halves
      cosine-shaped, updated every step (Smith & Topin, 2019, "Super-Convergence:
      Very Fast Training of Neural Networks Using Large Learning Rates", Section 4;
      the shape and constants of PyTorch's ``OneCycleLR`` defaults). ``base_lr``
      is the peak.

    Raises
    ------
    ValueError
        For an unknown schedule name.
    """
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * 0.1 ** ((epoch >= epochs * 0.5) + (epoch >= epochs * 0.75))
    if schedule == "cosine":
        t = (epoch + step / max(steps_per_epoch, 1)) / max(epochs, 1)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if schedule == "onecycle":
        t = min((epoch + step / max(steps_per_epoch, 1)) / max(epochs, 1), 1.0)
        start, end = base_lr / ONECYCLE_DIV, base_lr / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
        if t < ONECYCLE_WARMUP:
            return _cosine_between(start, base_lr, t / ONECYCLE_WARMUP)
        return _cosine_between(base_lr, end, (t - ONECYCLE_WARMUP) / (1.0 - ONECYCLE_WARMUP))
    raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")


def _cosine_between(a: float, b: float, t: float) -> float:
    """From ``a`` at t = 0 to ``b`` at t = 1 along half a cosine."""
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))
