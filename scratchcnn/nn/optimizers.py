"""Optimizers that update parameters in place from their gradients."""
from __future__ import annotations

import numpy as np

import kernels
from kernels import numpy_ref

__all__ = ["Optimizer", "SGD", "Adam", "OPTIMIZERS"]


class Optimizer:
    """Base class. ``step(parameters)`` takes ``(key, param, grad)`` triples, e.g. ``model.parameters()``.

    Per-parameter state (moments, velocities) lives in ``self.state[key]`` as
    backend arrays, created at the first step. ``lr`` may be changed between steps
    (learning-rate schedules do). The optimizer computes with the NumPy reference
    until ``to`` (or the ``Sequential.build`` of the model it is compiled into)
    places it on the model's backend.
    """

    slots: tuple[str, ...] = ()  # names of the per-parameter state arrays
    K = numpy_ref  # until ``to``: the constructor touches no backend

    def __init__(self, lr, weight_decay=0.0):
        if not float(lr) > 0:
            raise ValueError(f"{type(self).__name__}: lr must be positive, got {lr!r}")
        if float(weight_decay) < 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {weight_decay!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.t = 0  # number of steps taken
        self.state: dict[str, dict] = {}

    def to(self, backend, dtype=None) -> "Optimizer":
        """Compute on ``backend`` (a name or kernel module) and move the state there, cast to ``dtype``."""
        new = kernels.get(backend) if isinstance(backend, str) else backend
        for slots in self.state.values():
            for slot, value in slots.items():
                host = self.K.to_numpy(value)
                slots[slot] = new.asarray(host if dtype is None else host.astype(dtype))
        self.K = new
        return self

    def _slots(self, key, param):
        state = self.state.get(key)
        if state is None:
            state = self.state[key] = {s: self.K.zeros(param.shape, param.dtype) for s in self.slots}
        return state

    def step(self, parameters) -> None:
        """Apply one update to every ``(key, param, grad)``; increments ``t``."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """Hyperparameters, JSON-serialisable."""
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        """All state as host arrays keyed ``"<param key>/<slot>"`` (for checkpoints)."""
        return {f"{key}/{slot}": self.K.to_numpy(arr)
                for key, slots in self.state.items() for slot, arr in slots.items()}

    def load_state_arrays(self, arrays: dict, t: int) -> None:
        """Inverse of ``state_arrays``; ``t`` is the step count to resume from."""
        self.state = {}
        for name, arr in arrays.items():
            key, slot = name.rsplit("/", 1)
            self.state.setdefault(key, {})[slot] = self.K.asarray(arr)
        self.t = int(t)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and Nesterov momentum.

    Parameters
    ----------
    lr : float
        Learning rate (per step).
    momentum : float in [0, 1)
    nesterov : bool
        Use Nesterov's look-ahead (requires momentum > 0).
    weight_decay : float
        L2 penalty coefficient added to the gradient.

    See ``kernels.numpy_ref.sgd_step`` for the update (Sutskever et al., 2013).
    """

    slots = ("velocity",)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def step(self, parameters):
        self.t += 1
        for key, param, grad in parameters:
            velocity = self._slots(key, param)["velocity"]
            self.K.sgd_step(param, grad, velocity, self.lr, self.momentum, self.nesterov,
                            self.weight_decay)

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam: per-parameter steps from bias-corrected first and second moment estimates.

    Parameters
    ----------
    lr : float
        Step size alpha (per step).
    beta1, beta2 : float in [0, 1)
        Exponential decay rates of the moment estimates.
    eps : float
        Added to ``sqrt(v_hat)`` in the denominator.
    weight_decay : float
        L2 penalty coefficient added to the gradient (as PyTorch's Adam, not AdamW).

    References
    ----------
    Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", ICLR,
    Algorithm 1; see ``kernels.numpy_ref.adam_step``.
    """

    slots = ("m", "v")

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        if not (0.0 <= float(beta1) < 1.0 and 0.0 <= float(beta2) < 1.0):
            raise ValueError(f"Adam: beta1 and beta2 must be in [0, 1), got {beta1!r}, {beta2!r}")
        if not float(eps) > 0:
            raise ValueError(f"Adam: eps must be positive, got {eps!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def step(self, parameters):
        self.t += 1
        for key, param, grad in parameters:
            slots = self._slots(key, param)
            self.K.adam_step(param, grad, slots["m"], slots["v"], self.lr, self.beta1, self.beta2,
                             self.eps, self.t, self.weight_decay)

    def get_config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


# The optimizer classes a checkpoint may name (by class name): loading never looks a class up by arbitrary name.
OPTIMIZERS = {"Adam": Adam, "SGD": SGD}
