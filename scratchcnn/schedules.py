"""Learning-rate schedules, as functions of training progress."""
from __future__ import annotations

import math

__all__ = ["SCHEDULES", "learning_rate"]

SCHEDULES = ("constant", "step", "cosine")


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
    raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
