"""The CUDA backend, checked without a GPU.

1. ``tests/cudasim`` (every kernel against the NumPy reference, and training
   steps against the NumPy backend) runs in a subprocess under Numba's CUDA
   simulator: ``NUMBA_ENABLE_CUDASIM=1`` must be set before Numba is imported,
   so it cannot be switched on in this process. On a machine with a GPU the
   same folder also runs in this process, on the hardware.
2. The simulator executes kernels as Python and checks no types, so the kernel
   launches it recorded are also compiled to PTX for a real GPU (sm_90) where
   NVIDIA's NVVM is installed (``pip install nvidia-cuda-nvcc-cu12``); without
   it that test is skipped. It caught what the simulator cannot: a shared-memory
   shape that was not a compile-time constant, and ``min``/``max`` calls that
   Numba's CUDA target does not compile.

3. ``--backend cuda`` on a machine without a GPU is one clear line and exit code 1.

Run time: nearly all of it is the simulator subprocess, 165 s at a load average of 6
on 2 cores (2026-12-02; 320 s before the simulator stopped running ``Sequential.warm_up``'s
twin training step, see ``kernels.numba_cuda.COMPILES``), most of it the three training tests.
"""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GEMM_VARIANTS = {(np.dtype(d).str, ta, tb) for d in (np.float32, np.float64)
                 for ta in (False, True) for tb in (False, True)}


@pytest.fixture(scope="module")
def simulator_run(tmp_path_factory):
    """Run ``tests/cudasim`` under the simulator once; return (process, junit report, signatures file)."""
    out = tmp_path_factory.mktemp("cudasim")
    report, signatures = out / "report.xml", out / "signatures.pkl"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", SCRATCHCNN_CUDA_SIGNATURES=str(signatures))
    # The simulator runs SplitMix64 on NumPy uint64 scalars, which warn when they wrap (as intended).
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cudasim",
           "-W", "ignore:overflow encountered:RuntimeWarning", f"--junitxml={report}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    return proc, report, signatures


@pytest.mark.cudasim
def test_cuda_kernels_and_training_pass_under_the_simulator(simulator_run):
    proc, report, _ = simulator_run
    assert proc.returncode == 0, f"simulator tests failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    suite = ET.parse(report).getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    # Every test ran (none skipped for want of a GPU) and passed.
    assert counts["tests"] >= 25 and counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts


@pytest.mark.cudasim
def test_every_cuda_kernel_ran_under_the_simulator(simulator_run):
    """The launch record names every kernel of ``kernels.numba_cuda`` and all eight GEMM variants."""
    proc, _, signatures = simulator_run
    assert proc.returncode == 0, "see test_cuda_kernels_and_training_pass_under_the_simulator"
    launched = pickle.loads(signatures.read_bytes())
    names = {name for name, _, _ in launched}
    kernels_defined = {name for name in _cuda_definitions() if name.endswith("_k")}
    assert len(kernels_defined) >= 25
    assert kernels_defined - names == set()
    assert {recipe for name, recipe, _ in launched if name == "_gemm_kernel"} == GEMM_VARIANTS


def _cuda_definitions() -> dict:
    """Every top-level name of the modules of ``kernels.numba_cuda`` (kernels, kernel factories, helpers)."""
    import pkgutil

    from kernels import numba_cuda

    names = {}
    for info in pkgutil.iter_modules(numba_cuda.__path__):
        names.update(vars(importlib.import_module(f"{numba_cuda.__name__}.{info.name}")))
    return names


def _nvvm_problem() -> str | None:
    """Why kernels cannot be compiled to PTX here (None if they can)."""
    from numba import cuda, float32

    def probe(a):
        a[0] = 1

    try:
        cuda.compile_ptx(probe, (float32[:],), cc=(9, 0))
    except Exception as exc:  # noqa: BLE001 - NVVM missing shows up as several error types
        return (f"NVVM is not available ({type(exc).__name__}); pip install nvidia-cuda-nvcc-cu12 "
                "to compile the kernels for a GPU without one")
    return None


@pytest.mark.cudasim
def test_recorded_kernels_compile_for_a_real_gpu(simulator_run, monkeypatch):
    from numba import cuda

    if _nvvm_problem():
        pytest.skip(_nvvm_problem())
    definitions = _cuda_definitions()
    proc, _, signatures = simulator_run
    assert proc.returncode == 0, "see test_cuda_kernels_and_training_pass_under_the_simulator"
    if not cuda.is_available():
        # Device functions are compiled for "the current device"; name one: an H100 (sm_90).
        fake = type("Device", (), {"compute_capability": (9, 0)})()
        for module in ("numba.cuda.api", "numba.cuda.dispatcher"):
            monkeypatch.setattr(importlib.import_module(module), "get_current_device", lambda: fake,
                                raising=False)
    failures = []
    launched = pickle.loads(signatures.read_bytes())
    for name, recipe, types in launched:
        kernel = definitions[name](*recipe) if recipe else definitions[name]
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, types, cc=(9, 0))
        except Exception as exc:  # noqa: BLE001 - report every kernel that fails, with its types
            failures.append(f"{name}{recipe or ''}{types}: {type(exc).__name__}: {str(exc)[:500]}")
            continue
        assert ".entry" in ptx
    assert not failures, "\n".join(failures)
    assert len(launched) >= 30


def test_backend_cuda_without_a_gpu_is_one_line_and_exit_code_1(tmp_path, capsys):
    import kernels
    from scratchcnn import train

    if "cuda" in kernels.available():
        pytest.skip("this machine can run the CUDA backend")
    code = train.main(["--backend", "cuda", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "backend 'cuda' is not available" in err and "--backend cpu" in err
    assert not (tmp_path / "run").exists()  # refused before any data was read or folder made
