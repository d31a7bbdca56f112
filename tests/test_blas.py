"""The BLAS behind the cpu backend's products: MKL where installed, else OpenBLAS; both compute the same."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernels.numba_cpu import blas

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh process, because the choice is made once per process.
CHECK = textwrap.dedent("""
    import numpy as np
    import kernels.numba_cpu as C, kernels.numpy_ref as R
    from kernels.numba_cpu import blas
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 3, 10, 10)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    a, b = rng.standard_normal((2, 40, 30)).astype(np.float32)
    ones, zeros = np.ones(5, np.float32), np.zeros(5, np.float32)
    np.testing.assert_allclose(C.gemm(a, b, trans_b=True), R.gemm(a, b, trans_b=True), rtol=1e-5, atol=1e-5)
    got, want = (K.conv2d_affine_forward(x, w, ones, zeros, False, 1, 1)[0] for K in (C, R))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    print(blas.provider())
""")


def _run(choice):
    env = dict(os.environ, PYTHONPATH=str(ROOT), SCRATCHCNN_BLAS=choice)
    return subprocess.run([sys.executable, "-c", CHECK], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_default_is_mkl_where_it_is_installed():
    assert blas.provider() == ("mkl" if blas._mkl_library() is not None else "openblas")


@pytest.mark.parametrize("choice", ["openblas", "mkl"])
def test_each_blas_gives_the_reference_products(choice):
    if choice == "mkl" and blas._mkl_library() is None:
        pytest.skip("MKL is not installed here (pip install mkl)")
    result = _run(choice)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == choice


def test_an_unknown_choice_is_an_error_that_names_the_variable():
    result = _run("goto")
    assert result.returncode != 0
    assert "SCRATCHCNN_BLAS='goto'" in result.stderr and "openblas" in result.stderr
