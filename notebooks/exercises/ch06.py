"""Checks of notebook 6's exercises: Nesterov momentum and Adam with an L2 penalty, derived, against the
framework's optimizers."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import optim as reference_optim
from scratchcnn.nn import optimizers as optimizers_module
from scratchcnn.nn.optimizers import SGD, Adam

FORBID = {"scratchcnn.nn.optimizers (SGD, Adam)": optimizers_module, "kernels.numpy_ref.optim": reference_optim}


def _run(answer, optimizer, slots, steps=6, scale=1.0, known=()):
    """Apply ``steps`` updates with varying gradients through ``answer`` and through ``optimizer``; compare.

    ``known`` holds (message, step function) pairs of recognised mistakes, run alongside on the same
    gradients: when the answer matches one of them, its message is the verdict.
    """
    optimizer.to("numpy")
    rng = np.random.default_rng(9)
    theta_fw = rng.standard_normal(5)
    theta = theta_fw.copy()
    state = [np.zeros(5) for _ in range(slots)]
    mistakes = [(message, step, theta_fw.copy(), [np.zeros(5) for _ in range(slots)]) for message, step in known]
    for t in range(1, steps + 1):
        g = scale * rng.standard_normal(5)
        optimizer.step([("theta", theta_fw, g.copy())])
        args = (theta.copy(), g.copy(), *state) + ((t,) if slots == 2 else ())
        got = run_answer(answer, *args, forbid=FORBID)
        expect(isinstance(got, tuple) and len(got) == slots + 1,
               f"expected a tuple of {slots + 1} arrays (theta and the new state), got {type(got).__name__}")
        theta, state = np.asarray(got[0], np.float64), [np.asarray(s, np.float64) for s in got[1:]]
        for index, (message, step, m_theta, m_state) in enumerate(mistakes):
            out = step(m_theta, g, *m_state, *((t,) if slots == 2 else ()))
            mistakes[index] = (message, step, out[0], list(out[1:]))
        if not np.allclose(theta, theta_fw, rtol=1e-9, atol=1e-12):
            matching = [message for message, _, m_theta, _ in mistakes if np.allclose(theta, m_theta, rtol=1e-9,
                                                                                       atol=1e-12)]
            if matching and (len(matching) > 1 or t == 1) and t < steps:
                continue  # one step fits several mistakes (v starts at 0); a later step tells them apart
            if len(matching) == 1:
                raise ExerciseFailed(f"theta after step {t}: {matching[0]}")
        try:
            expect_close("theta", theta, theta_fw, rtol=1e-9, atol=1e-12, where=f"after step {t}")
        except ExerciseFailed as error:
            raise ExerciseFailed(f"{error} (gradients of size about {scale:g})") from None


def _heavy_ball(theta, g, v, lr, mu):
    v = mu * v + g
    return theta - lr * v, v


def _no_gradient(theta, g, v, lr, mu):
    v = mu * v + g
    return theta - lr * mu * v, v


@checker("6.1")
def nesterov_step(answer):
    """``answer(theta, g, v, lr, mu)`` at lr 0.1, mu 0.9, against ``SGD(0.1, momentum=0.9, nesterov=True)``."""
    known = (("this is plain (heavy-ball) momentum, theta - lr*v; Nesterov's step also looks ahead by mu*v",
              lambda th, g, v: _heavy_ball(th, g, v, 0.1, 0.9)),
             ("you left the gradient out of the step; after the change of variables it is "
              "theta - lr*(g + mu*v_new)", lambda th, g, v: _no_gradient(th, g, v, 0.1, 0.9)))
    _run(lambda theta, g, v: answer(theta, g, v, 0.1, 0.9), SGD(0.1, momentum=0.9, nesterov=True), 1, known=known)
    return "six steps match SGD(lr=0.1, momentum=0.9, nesterov=True)"


def _adam(theta, g, m, v, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-8, wd=0.1, correct=True, coupled=True,
          eps_inside=False):
    """Adam with the L2 penalty's gradient in the moments (``coupled``) or applied outside them (AdamW)."""
    g = g + wd * theta if coupled else g
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    m_hat, v_hat = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if correct else (m, v)
    step = m_hat / (np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps)
    return theta - lr * step - (0.0 if coupled else lr * wd * theta), m, v


@checker("6.2")
def adam_step(answer):
    """``answer(theta, g, m, v, t, lr, beta1, beta2, eps, weight_decay)`` against ``Adam(0.01, weight_decay=0.1)``,
    large and tiny gradients."""
    known = (("no bias correction: m and v start at 0, so divide them by 1 - beta**t", dict(correct=False)),
             ("the L2 penalty's gradient, weight_decay*theta, belongs to the loss's gradient g, so it goes through m "
              "and v; you applied it outside them (that is AdamW's decoupled decay)", dict(coupled=False)),
             ("eps is added to sqrt(v_hat), not inside the square root", dict(eps_inside=True)))
    for scale in (1.0, 1e-6):
        _run(lambda theta, g, m, v, t: answer(theta, g, m, v, t, 0.01, 0.9, 0.999, 1e-8, 0.1),
             Adam(0.01, weight_decay=0.1), 2, scale=scale,
             known=[(message, lambda th, g, m, v, t, kw=kw: _adam(th, g, m, v, t, **kw)) for message, kw in known])
    return "six steps match Adam(lr=0.01, weight_decay=0.1) for gradients of size 1 and 1e-6"
