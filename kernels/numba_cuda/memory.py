"""Device memory: allocation, upload and download (``empty``, ``zeros``, ``asarray``, ``to_numpy``, ``synchronize``).

Nothing else in a training step crosses the bus: ``asarray`` uploads a host
array, ``to_numpy`` downloads one; the other kernels take device arrays and
upload a host input only when given one (``_dev``).
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import grid_1d

__all__ = ["empty", "zeros", "asarray", "to_numpy", "synchronize"]


def _is_device(a) -> bool:
    return hasattr(a, "copy_to_host")


def _dev(a):
    """A read-only input on the device: device arrays pass through, host arrays are uploaded once."""
    return a if _is_device(a) else cuda.to_device(np.ascontiguousarray(a))


def empty(shape, dtype=np.float32):
    """An uninitialised device array of ``shape`` and ``dtype`` (``cuda.device_array``)."""
    return cuda.device_array(shape, np.dtype(dtype))


@cuda.jit(cache=True)
def _fill_k(a, value):
    """``a[i] = value`` for a 1-D array. Grid-stride, ``grid_1d(a.size)`` (blocks of 256 threads)."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


def zeros(shape, dtype=np.float32):
    """A zero-filled device array of ``shape`` and ``dtype``, filled on the device (no upload)."""
    out = empty(shape, dtype)
    if out.size:
        _launch.launch(_fill_k, *grid_1d(out.size), out.reshape(-1), 0)
    return out


def asarray(a, dtype=None):
    """Host array -> C-contiguous device array (a copy); a device array of that dtype is returned as is.

    A device array of another dtype is cast through the host (rare: ``Layer.to``
    casts on the host before uploading).
    """
    if _is_device(a):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return a
        return cuda.to_device(a.copy_to_host().astype(dtype))
    return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))


def to_numpy(a):
    """Device array -> NumPy array on the host (waits for the kernels that write it); host arrays pass."""
    return a.copy_to_host() if _is_device(a) else np.asarray(a)


def synchronize():
    """Wait until every queued kernel has finished (``cuda.synchronize``), e.g. before reading a clock."""
    cuda.synchronize()


def _flat(a):
    return a.reshape(-1)
