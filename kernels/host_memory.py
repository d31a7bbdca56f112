"""Arrays in host memory: allocation and the (trivial) transfer functions of the host backends.

The ``numpy`` and ``cpu`` backends both keep their arrays in NumPy arrays on the
host, so both take these five functions of the kernel contract from here;
``kernels.numba_cuda.memory`` defines the same names for device arrays.
"""
from __future__ import annotations

import numpy as np

__all__ = ["empty", "zeros", "asarray", "to_numpy", "synchronize"]


def empty(shape, dtype=np.float32):
    """An uninitialised backend array of ``shape`` and ``dtype`` (here: ``np.empty``)."""
    return np.empty(shape, dtype)


def zeros(shape, dtype=np.float32):
    """A zero-filled backend array of ``shape`` and ``dtype`` (here: ``np.zeros``)."""
    return np.zeros(shape, dtype)


def asarray(a, dtype=None):
    """Host array -> C-contiguous backend array (here: no copy when already contiguous)."""
    return np.ascontiguousarray(a, dtype=dtype)


def to_numpy(a):
    """Backend array -> NumPy array on the host (here: the array itself)."""
    return np.asarray(a)


def synchronize():
    """Wait until queued work is done (here: nothing is ever queued)."""
