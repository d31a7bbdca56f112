"""Set-up of the CUDA kernel tests: they run on a real GPU, or under Numba's CUDA simulator.

``tests/test_cuda_sim.py`` runs this folder in a subprocess with
``NUMBA_ENABLE_CUDASIM=1`` (the variable must be set before Numba is imported,
so it cannot be switched on inside a running test session). In a session with
neither a GPU nor the simulator the modules here skip themselves.

When ``SCRATCHCNN_CUDA_SIGNATURES`` names a file, every kernel launch is
recorded there (kernel and argument types, pickled) so that the parent test can
compile exactly those specialisations for a real GPU with NVVM.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import kernels


def cuda_problem() -> str | None:
    """Why the CUDA kernels cannot run in this process (None if they can)."""
    try:
        kernels.get("cuda")
    except kernels.BackendUnavailable:
        return "no GPU here: tests/test_cuda_sim.py runs these under the CUDA simulator in a subprocess"
    return None


def _argument_type(value):
    import numba

    host = getattr(value, "_ary", None)  # the simulator's device array wraps a NumPy array
    if host is None and hasattr(value, "copy_to_host"):
        return numba.typeof(value)
    return numba.typeof(value if host is None else host)


def _recipe(kernel):
    """How to rebuild ``kernel`` outside the simulator: (name, factory arguments or None)."""
    fn = getattr(kernel, "fn", None) or kernel.py_func
    if fn.__name__ == "gemm_tiled":  # made by numba_cuda.gemm._gemm_kernel(dtype, trans_a, trans_b)
        cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__)))
        return "_gemm_kernel", (np.dtype(str(cells["dt"])).str, cells["trans_a"], cells["trans_b"])
    return fn.__name__, None


@pytest.fixture(autouse=True, scope="session")
def record_launches():
    path = os.environ.get("SCRATCHCNN_CUDA_SIGNATURES")
    if not path or cuda_problem():
        yield
        return
    from kernels.numba_cuda import launch as _launch

    seen = set()
    original = _launch.launch

    def recording_launch(kernel, blocks, threads, *args):
        seen.add((*_recipe(kernel), tuple(_argument_type(a) for a in args)))
        original(kernel, blocks, threads, *args)

    _launch.launch = recording_launch
    try:
        yield
    finally:
        _launch.launch = original
        with open(path, "wb") as f:
            pickle.dump(sorted(seen, key=repr), f)
