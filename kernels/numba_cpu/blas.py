"""BLAS ``sgemm``/``dgemm`` called from Numba's threads, one tile of the output per thread.

Which BLAS: Intel's MKL (the ``mkl`` package, its sequential layer) where it is
installed, else SciPy's OpenBLAS; ``SCRATCHCNN_BLAS=mkl|openblas`` chooses. MKL
first because its single-threaded sgemm is the faster at vgg-small's per-image
convolution shapes, small and short (32 or 64 output channels by 288-576 by
224-840 positions; the measured rates: ``benchmarks/README.md``, "Figures behind
the code's choices"). Both take the same Fortran arguments, so the compiled code
only receives a different function address.

Why not ``numpy.matmul``: NumPy's OpenBLAS keeps its own thread pool, whose
threads spin for a while after each product. On a machine with few cores they
then compete with Numba's OpenMP threads for the same cores and every kernel
that follows a GEMM runs several times slower. Here the product is split into
row blocks inside a Numba ``prange`` and each block is one single-threaded BLAS
call (MKL's sequential layer, or SciPy's OpenBLAS through
``scipy.linalg.cython_blas`` made single-threaded), so a training step uses one
thread pool only.

BLAS is column-major (Fortran). A row-major matrix is, to BLAS, its transpose,
so ``C = op(A) @ op(B)`` (row-major) is computed as ``C^T = op(B)^T @ op(A)^T``
(column-major): the operands swap places and keep their transpose flags
(Dongarra et al., 1990, "A set of level 3 basic linear algebra subprograms",
ACM TOMS 16(1); the row-major convention as in CBLAS's ``cblas_sgemm``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import sys

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import get_cython_function_address, intrinsic
from threadpoolctl import ThreadpoolController

__all__ = ["gemm", "gemm_block", "gemm_address", "provider", "single_threaded", "PROVIDERS"]

_N, _T = ord("N"), ord("T")
PROVIDERS = ("mkl", "openblas")


def _mkl_library():
    """The MKL runtime library (``libmkl_rt``) as a ctypes handle, or None where it is not installed."""
    names = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")), reverse=True)
    names += [ctypes.util.find_library("mkl_rt")] if ctypes.util.find_library("mkl_rt") else []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@functools.cache
def _provider() -> tuple[str, int, int]:
    """(name, sgemm address, dgemm address) of the BLAS in use; set up on first use, not at import.

    Raises
    ------
    ValueError
        For an unknown ``SCRATCHCNN_BLAS``, or ``mkl`` asked for where it is not installed.
    """
    single_threaded()  # also for code that calls SciPy's BLAS inside Numba (np.dot in @njit)
    wanted = os.environ.get("SCRATCHCNN_BLAS", "auto")
    if wanted not in ("auto",) + PROVIDERS:
        raise ValueError(f"SCRATCHCNN_BLAS={wanted!r}: expected one of auto, {', '.join(PROVIDERS)}")
    if wanted in ("auto", "mkl"):
        lib = _mkl_library()
        if lib is not None:
            lib.MKL_Set_Threading_Layer(1)  # MKL_THREADING_SEQUENTIAL: the threads are Numba's
            address = lambda name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value  # noqa: E731
            return "mkl", address("sgemm_"), address("dgemm_")
        if wanted == "mkl":
            raise ValueError("SCRATCHCNN_BLAS=mkl, but MKL's libmkl_rt is not installed (pip install mkl)")
    # The Fortran-style entry points (every argument a pointer), passed to compiled code as
    # integers rather than baked into it, so that it can be cached.
    return ("openblas", get_cython_function_address("scipy.linalg.cython_blas", "sgemm"),
            get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))


def provider() -> str:
    """The BLAS the kernels call: "mkl" or "openblas" (ValueError for a bad ``SCRATCHCNN_BLAS``)."""
    return _provider()[0]


def gemm_address(dtype) -> int:
    """The address of ``sgemm`` (float32) or ``dgemm`` (float64) of the BLAS in use (errors: ``provider``)."""
    return _provider()[1] if np.dtype(dtype) == np.float32 else _provider()[2]


@functools.cache
def single_threaded() -> None:
    """Make SciPy's OpenBLAS single-threaded, once per process: the parallelism is Numba's.

    Called before the first product rather than at import, so that importing the
    backend changes no setting. NumPy's own BLAS is left alone.
    """
    for lib in ThreadpoolController().lib_controllers:
        if lib.internal_api == "openblas" and "scipy.libs" in lib.filepath.replace("\\", "/"):
            lib.set_num_threads(1)


@intrinsic
def _call13(typingctx, address, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13):
    """Call the C function at integer ``address`` with 13 integer-valued pointer arguments."""
    sig = types.void(types.uintp, *([types.uintp] * 13))

    def codegen(context, builder, signature, args):
        byte_ptr = ir.PointerType(ir.IntType(8))
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr] * 13)
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [builder.inttoptr(arg, byte_ptr) for arg in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True)
def gemm(a, b, trans_a, trans_b, out, tasks, address):
    """``out = op(a) @ op(b)`` for C-contiguous float32/float64 arrays, in ``tasks`` blocks.

    Parameters
    ----------
    a : (M, K), or (K, M) with ``trans_a``
    b : (K, N), or (N, K) with ``trans_b``
    out : (M, N), written
    tasks : int
        Number of blocks (one BLAS call each), e.g. the number of threads. The
        output is cut along its longer side, so each thread reads only its share
        of the larger operand.
    address : int
        ``gemm_address(dtype)``: sgemm for float32 arrays, dgemm for float64.
    """
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    size = out.itemsize
    flags = np.empty(2, np.uint8)  # transa', transb': the column-major left operand is op(b)^T
    flags[0], flags[1] = _T if trans_b else _N, _T if trans_a else _N
    fixed = np.empty(4, np.int32)  # k', lda', ldb', ldc'
    fixed[0], fixed[1], fixed[2], fixed[3] = k, b.shape[1], a.shape[1], n
    scalars = np.empty(2, out.dtype)
    scalars[0], scalars[1] = 1.0, 0.0  # alpha, beta
    split_rows = m >= n
    tasks = max(1, min(tasks, m if split_rows else n))
    for t in prange(tasks):
        whole = m if split_rows else n
        lo, hi = t * whole // tasks, (t + 1) * whole // tasks
        mn = np.empty(2, np.int32)  # m', n' of this block
        a_start, b_start, c_start = a.ctypes.data, b.ctypes.data, out.ctypes.data
        if split_rows:  # rows lo:hi of op(a) and of out
            mn[0], mn[1] = n, hi - lo
            a_start += (lo if trans_a else lo * a.shape[1]) * size
            c_start += lo * n * size
        else:  # columns lo:hi of op(b) and of out
            mn[0], mn[1] = hi - lo, m
            b_start += (lo * b.shape[1] if trans_b else lo) * size
            c_start += lo * size
        _call13(address, flags.ctypes.data, flags.ctypes.data + 1, mn.ctypes.data, mn.ctypes.data + 4,
                fixed.ctypes.data, scalars.ctypes.data, b_start, fixed.ctypes.data + 4, a_start,
                fixed.ctypes.data + 8, scalars.ctypes.data + size, c_start, fixed.ctypes.data + 12)


@njit(cache=True, inline="always")
def gemm_block(address, trans_a, trans_b, m, n, k, a_ptr, lda, b_ptr, ldb, c_ptr, ldc, accumulate, args, scalars):
    """One single-threaded BLAS call from compiled code: row-major ``C = op(A) @ op(B)`` (``+ C`` if ``accumulate``).

    ``C`` is m x n with row stride ``ldc``; ``op(A)`` is m x k, ``op(B)`` k x n, stored
    row-major with row strides ``lda`` and ``ldb`` at the integer addresses ``a_ptr`` and
    ``b_ptr`` (``array.ctypes.data``). ``args`` (int32, 8) and ``scalars`` (2, the arrays'
    dtype) are the caller's scratch, one per thread, because BLAS takes every argument by
    pointer. Swapping the operands makes it column-major (module docstring).
    """
    args[0], args[1] = _T if trans_b else _N, _T if trans_a else _N
    args[2], args[3], args[4] = n, m, k
    args[5], args[6], args[7] = ldb, lda, ldc
    scalars[0], scalars[1] = 1.0, 1.0 if accumulate else 0.0
    p = args.ctypes.data
    _call13(address, p, p + 4, p + 8, p + 12, p + 16, scalars.ctypes.data, b_ptr, p + 20, a_ptr, p + 24,
            scalars.ctypes.data + scalars.itemsize, c_ptr, p + 28)
