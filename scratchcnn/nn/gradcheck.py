"""Numerical gradient checking by central differences, used by the tests and the notebooks."""
from __future__ import annotations

import numpy as np

__all__ = ["numerical_grad", "rel_error", "max_elementwise_rel_error", "check_layer"]


def numerical_grad(f, x: np.ndarray, dout: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference estimate of the gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    Parameters
    ----------
    f : callable
        ``f()`` recomputes the output from the current contents of ``x`` (which
        this function perturbs in place and restores).
    x : ndarray, float64
        The array to differentiate with respect to.
    dout : ndarray, float64
        Upstream gradient, the shape of ``f()``'s output.
    h : float
        Step; the error of a central difference is O(h**2) (CS231n, "Gradient checks").

    Returns
    -------
    grad : ndarray, float64, shape of ``x``

    Raises
    ------
    TypeError
        If ``x`` is not float64 (float32 round-off would swamp the comparison).
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_grad needs float64 arrays, got {x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = float(np.sum(np.asarray(f()) * dout))
        flat[i] = old - h
        minus = float(np.sum(np.asarray(f()) * dout))
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, b) -> float:
    """Relative error of two arrays: ``max |a - b| / max(1e-8, max(|a| + |b|))``.

    The largest difference is measured against the largest magnitude of the
    array, not element by element: a gradient entry that is almost zero (batch
    norm's input gradient sums to zero per channel) would otherwise turn round-off
    of 1e-16 into a "relative error" of 1e-6. Any entry wrong by more than the
    tolerance times the array's scale still fails.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def max_elementwise_rel_error(a, b, floor: float = 1e-8) -> float:
    """The largest per-element relative error, ``max_i |a_i - b_i| / max(|a_i|, |b_i|, floor)``.

    This is the quantity whose thresholds the CS231n notes quote ("Gradient checks":
    below 1e-7 is good, above 1e-2 is probably wrong). It is stricter than
    ``rel_error``: an entry near zero in both arrays, whose difference is only
    round-off, can make it large; ``floor`` (in the gradient's units) keeps such
    entries from dividing by almost nothing.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)))


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, h: float = 1e-5,
                training: bool = True) -> dict[str, float]:
    """Compare a layer's analytic gradients with central differences.

    The layer is moved to float64 on its current backend; a random upstream
    gradient ``dout`` is drawn from ``rng``; the relative error of the input
    gradient (key ``"x"``) and of every parameter gradient (keys of ``params``)
    is returned.

    Parameters
    ----------
    layer : Layer
    x : ndarray, float64, the layer's input (N, ...)
    rng : numpy.random.Generator
    training : bool
        Mode of the forward pass. A Dropout layer's mask counter is held fixed,
        so every probe sees the same mask.

    Returns
    -------
    errors : dict[str, float]
    """
    K = layer.to(layer.K, np.float64).K
    x = np.array(x, np.float64)
    calls = getattr(layer, "calls", None)  # Dropout: hold the mask counter so every probe sees one mask

    def run():
        if calls is not None:
            layer.calls = calls
        return K.to_numpy(layer.forward(K.asarray(x), training))

    dout = rng.standard_normal(np.shape(run()))
    run()
    dx = np.array(K.to_numpy(layer.backward(K.asarray(dout))))
    analytic = {key: np.array(K.to_numpy(g)) for key, g in layer.grads.items()}
    errors = {"x": rel_error(dx, numerical_grad(run, x, dout, h))}
    for key in layer.params:
        host = np.array(K.to_numpy(layer.params[key]))

        def run_param(key=key, host=host):
            layer.params[key] = K.asarray(host)  # re-upload: on a GPU backend params are copies
            return run()

        errors[key] = rel_error(analytic[key], numerical_grad(run_param, host, dout, h))
        layer.params[key] = K.asarray(host)
    return errors
