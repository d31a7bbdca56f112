"""Compute kernels of scratchcnn: the contract, three backends, and how a backend is found.

Three backends define the same functions with the same signatures and describe
themselves with the same attributes (the contract: ``kernels.api``, whose names
this package re-exports):

=========  ======================  ===============================================
name       module                  what it is
=========  ======================  ===============================================
``numpy``  ``kernels.numpy_ref``   the readable NumPy reference
``cpu``    ``kernels.numba_cpu``   ``@njit(parallel=True, cache=True)`` loops
``cuda``   ``kernels.numba_cuda``  ``numba.cuda`` kernels on device arrays
=========  ======================  ===============================================

Each backend is a package split by topic (``gemm``, ``conv``, ``pool``,
``activation``, ``norm``, ``loss``, ``optim``) whose ``__init__`` re-exports
every kernel. Which backend: the name passed to ``get``, else the environment
variable ``SCRATCHCNN_BACKEND``, else the fastest one available (``cuda`` with a
real GPU, then ``cpu`` when Numba imports, then ``numpy``).

>>> import numpy as np, kernels
>>> K = kernels.get("numpy")
>>> K.relu_forward(np.array([-1.0, 2.0]))
array([0., 2.])
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from kernels.api import CAPABILITIES, KERNELS, check_nchw, check_out, conv_output_size, gemm_shape

__all__ = ["BACKENDS", "BackendUnavailable", "available", "get", "default_name",
           "KERNELS", "CAPABILITIES", "conv_output_size", "check_nchw", "check_out", "gemm_shape"]

BACKENDS = {
    "numpy": "kernels.numpy_ref",
    "cpu": "kernels.numba_cpu",
    "cuda": "kernels.numba_cuda",
}


class BackendUnavailable(RuntimeError):
    """A backend was asked for by name but cannot run here; the message says why."""


def _cuda_problem() -> str | None:
    """Why the CUDA backend cannot run (None if it can). Imports numba lazily."""
    try:
        from numba import config, cuda
    except ImportError as exc:
        return f"numba is not installed ({exc}); pip install numba"
    if config.ENABLE_CUDASIM:
        return None  # the simulator runs kernels on the CPU, for tests
    try:
        if not cuda.is_available():
            return ("no usable NVIDIA GPU/driver was found by numba.cuda "
                    "(cuda.is_available() is False); use --backend cpu")
    except Exception as exc:  # noqa: BLE001 - driver errors come in many types
        return f"numba.cuda could not initialise the GPU driver: {exc}"
    return None


def _problem(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None."""
    if name == "numpy":
        return None
    if name == "cpu":
        return None if importlib.util.find_spec("numba") else "numba is not installed; pip install numba"
    if name == "cuda":
        return _cuda_problem()
    return f"unknown backend {name!r}; expected one of {sorted(BACKENDS)}"


def available() -> list[str]:
    """Names of the backends that can run in this process, fastest last."""
    return [name for name in ("numpy", "cpu", "cuda") if _problem(name) is None]


def default_name() -> str:
    """The backend used when none is named: $SCRATCHCNN_BACKEND, then the fastest available."""
    env = os.environ.get("SCRATCHCNN_BACKEND")
    if env:
        return env
    # The CUDA simulator is for tests: far too slow to be picked without being asked for.
    fastest = [b for b in available() if not (b == "cuda" and _simulated())]
    return fastest[-1]


def _simulated() -> bool:
    """True when NUMBA_ENABLE_CUDASIM=1 replaced the GPU with Numba's CPU simulator."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def get(name: str | None = None) -> ModuleType:
    """Return the kernel module of backend ``name`` (see the module docstring for the default).

    Raises
    ------
    BackendUnavailable
        If the name is unknown or the backend cannot run here; the message names
        the missing piece (Numba, a GPU driver).
    """
    name = name or default_name()
    problem = _problem(name)
    if problem is not None:
        raise BackendUnavailable(f"backend {name!r} is not available: {problem}")
    return importlib.import_module(BACKENDS[name])

