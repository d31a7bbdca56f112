"""Checks of notebook 6's exercises: one momentum step and one Adam step, against the framework's optimizers."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close
from scratchcnn.nn.optimizers import SGD, Adam


def _run(answer, optimizer, slots, steps=6, scale=1.0):
    """Apply ``steps`` updates with varying gradients through ``answer`` and through ``optimizer``; compare."""
    optimizer.to("numpy")
    rng = np.random.default_rng(9)
    theta_fw = rng.standard_normal(5)
    theta = theta_fw.copy()
    state = [np.zeros(5) for _ in range(slots)]
    for t in range(1, steps + 1):
        g = scale * rng.standard_normal(5)
        optimizer.step([("theta", theta_fw, g.copy())])
        got = answer(theta.copy(), g.copy(), *state, t) if slots == 2 else answer(theta.copy(), g.copy(), *state)
        expect(isinstance(got, tuple) and len(got) == slots + 1,
               f"expected a tuple of {slots + 1} arrays (theta and the new state), got {type(got).__name__}")
        theta, state = np.asarray(got[0], np.float64), [np.asarray(s, np.float64) for s in got[1:]]
        try:
            expect_close("theta", theta, theta_fw, rtol=1e-9, atol=1e-12, where=f"after step {t}")
        except ExerciseFailed as error:
            raise ExerciseFailed(f"{error} (gradients of size about {scale:g})") from None


@checker("6.1")
def momentum_step(answer):
    """``answer(theta, g, v, lr=..., mu=...)`` wrapped at lr 0.1, mu 0.9, against ``SGD(0.1, momentum=0.9)``."""
    _run(lambda theta, g, v: answer(theta, g, v, 0.1, 0.9), SGD(0.1, momentum=0.9), 1)
    return "six steps match SGD(lr=0.1, momentum=0.9)"


@checker("6.2")
def adam_step(answer):
    """``answer(theta, g, m, v, t, lr, beta1, beta2, eps)`` against ``Adam``, large and tiny gradients."""
    for scale in (1.0, 1e-6):
        _run(lambda theta, g, m, v, t: answer(theta, g, m, v, t, 0.01, 0.9, 0.999, 1e-8), Adam(0.01), 2, scale=scale)
    return "six steps match Adam(lr=0.01) for gradients of size 1 and 1e-6"
