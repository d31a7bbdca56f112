"""Launch configurations and scratch memory of the CUDA kernels (the rest of ``kernels.numba_cuda``).

Nothing here touches the GPU at import: the device is queried the first time a
kernel is launched, so ``kernels.numba_cuda`` imports on a machine without one.

How big a grid: a kernel needs enough resident warps on every streaming
multiprocessor (SM) to hide memory latency. Element-wise kernels launch one
thread per element up to ``BLOCKS_PER_SM`` blocks of ``THREADS`` threads per SM
and loop (grid-stride) beyond that; reductions and matrix products that would
leave SMs idle split their long axis into independent pieces (split-K), whose
partial results a second kernel adds in a fixed order, so results do not depend
on scheduling (no floating-point atomics). Numba's CUDA simulator reports one
SM, which keeps simulated grids small.
"""
from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

__all__ = ["THREADS", "WARP", "BLOCKS_PER_SM", "sm_count", "blocks_1d", "grid_1d", "reduction_threads",
           "gemm_splits", "reduction_splits", "scratch", "launch"]

THREADS = 256        # threads per block of the 1-D kernels: 8 warps, 8 such blocks fill an SM
WARP = 32            # threads that execute together; blocks are whole warps
BLOCKS_PER_SM = 32   # grid cap per SM for grid-stride loops: several waves, then each thread loops
MIN_SPLIT_K = 256    # a split-K piece runs at least 16 tiles of 16 along K, so its partial is worth writing
MAX_SPLITS = 64      # at most this many partial products (bounds the scratch and the final sum)
MIN_REDUCE = 4096    # a reduction block sums at least this many values (16 per thread)

_sm_count: int | None = None
_scratch: dict = {}


def sm_count() -> int:
    """Streaming multiprocessors of the current GPU (1 under the simulator); queried once."""
    global _sm_count
    if _sm_count is None:
        _sm_count = 1 if config.ENABLE_CUDASIM else int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    return _sm_count


def blocks_1d(n: int, threads: int = THREADS) -> int:
    """Blocks for ``n`` independent elements: one thread each, capped at ``BLOCKS_PER_SM`` per SM."""
    return max(1, min(math.ceil(n / threads), BLOCKS_PER_SM * sm_count()))


def grid_1d(n: int) -> tuple[int, int]:
    """``(blocks, threads)`` for ``n`` independent elements: ``blocks_1d(n)`` blocks of 256 threads.

    Fewer than 256 elements get one block of just enough whole warps, so that a
    bias of 10 values does not start 246 idle threads (which would cost little
    on a GPU, but each is a Python thread in the simulator).
    """
    threads = min(THREADS, WARP * math.ceil(max(n, 1) / WARP))
    return blocks_1d(n, threads), threads


def reduction_threads(length: int) -> int:
    """Threads of a block that sums ``length`` values: a power of two in [32, 256], ~16 values each.

    A dense layer's bias gradient sums 64 to 256 values per feature: one warp
    each is enough. Long sums (a convolution's N*H*W positions) get 256 threads.
    """
    wanted = max(WARP, math.ceil(length / 16))
    return min(THREADS, 1 << (wanted - 1).bit_length())


def gemm_splits(m: int, n: int, k: int, tile_m: int, tile_n: int, tile_k: int) -> tuple[int, int]:
    """Pieces ``(splits, chunk)`` the K axis of an (m x k) @ (k x n) product is cut into.

    One block computes one ``tile_m x tile_n`` tile of the output. When there are
    fewer tiles than two per SM (a weight gradient: 64 x 288 outputs summed over
    K = 30,976 positions is 5 tiles), K is cut into ``splits`` chunks of
    ``chunk`` (a multiple of ``tile_k``) so that ``tiles * splits`` blocks run at
    once ("split-K" in NVIDIA's CUTLASS, whose docs describe it under parallel
    reductions). Each split sums at least ``MIN_SPLIT_K`` products.
    """
    tiles = math.ceil(m / tile_m) * math.ceil(n / tile_n)
    wanted = math.ceil(2 * sm_count() / tiles)
    splits = max(1, min(wanted, k // MIN_SPLIT_K, MAX_SPLITS))
    chunk = math.ceil(math.ceil(k / splits) / tile_k) * tile_k
    return math.ceil(k / chunk), chunk


def reduction_splits(rows: int, length: int) -> tuple[int, int]:
    """Pieces ``(splits, chunk)`` each of ``rows`` sums of ``length`` values is cut into.

    A per-channel sum of a batch (32 channels of 173,056 values) in one block per
    channel would occupy 32 SMs; cutting each into ``splits`` chunks gives about
    four blocks per SM, each still summing at least ``MIN_REDUCE`` values.
    """
    wanted = math.ceil(4 * sm_count() / rows)
    splits = max(1, min(wanted, math.ceil(length / MIN_REDUCE)))
    chunk = math.ceil(length / splits)
    return math.ceil(length / chunk), chunk


def scratch(key: str, size: int, dtype) -> "cuda.devicearray.DeviceNDArray":
    """A 1-D device array of at least ``size`` elements, kept between calls and grown as needed.

    Split-K partial products and reduction partials live here, so a training step
    allocates no device memory. Sharing is safe because every kernel runs on the
    default stream, in launch order: a user of the scratch has finished before the
    next one is launched.
    """
    dtype = np.dtype(dtype)
    buf = _scratch.get((key, dtype))
    if buf is None or buf.size < size:
        buf = _scratch[(key, dtype)] = cuda.device_array(max(int(size), 1), dtype)
    return buf[:size]


def launch(kernel, blocks, threads, *args) -> None:
    """Queue ``kernel[blocks, threads](*args)`` on the default stream (asynchronous on a GPU)."""
    kernel[blocks, threads](*args)
