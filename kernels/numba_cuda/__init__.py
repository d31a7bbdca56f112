"""CUDA kernels written with ``numba.cuda``: the reference's functions on device arrays.

Same names, arguments and results as ``kernels.numpy_ref`` (read that package
for what each kernel computes), in modules of the same names (``gemm``,
``conv``, ``pool``, ``activation``, ``norm``, ``loss``, ``optim``), plus
``memory`` (device arrays, uploads and downloads), ``reduce`` (per-channel sums
shared by several kernels) and ``launch`` (grid sizes, split-K, scratch memory).

Arrays live on the GPU as Numba device arrays
(``numba.cuda.cudadrv.devicearray.DeviceNDArray``); ``asarray`` uploads a host
array and ``to_numpy`` downloads one, and nothing else crosses the bus: a
training step uploads its batch and leaves everything else on the device, and
the loss and the number correct stay in a device array of per-step rows until
the trainer reads them (every 50 steps). Kernels are queued on the default
stream and run asynchronously; ``synchronize`` waits for them.

How each public function works: it checks shapes and allocates missing outputs
in Python (host inputs are uploaded once), then queues one to three kernels.
Every kernel's docstring gives its launch configuration and what limits it;
``launch`` sizes the grids. The rules all kernels keep:

- one thread per output element, consecutive threads on consecutive addresses
  of the array they write (and, where the layout allows, read), so a warp's
  32 accesses merge into few memory transactions (coalescing);
- no two threads write the same element, so there are no atomics, and sums
  run in a fixed order: results do not change from run to run;
- reductions (bias gradients, batch-norm statistics, the loss) accumulate in
  float64, as the CPU backend does; the matrix product accumulates in the
  arrays' dtype, like BLAS.
- kernels write ``a if a < b else b`` rather than ``min``/``max``: Numba's
  built-in CUDA target cannot compile those builtins' vararg overloads.

Written as ``from numba import cuda`` so that it runs on Numba's built-in CUDA
target or on NVIDIA's ``numba-cuda`` package (``pip install scratchcnn[gpu]``).
Kernels compile on first use (once per argument types and GPU architecture),
so importing this package needs no GPU, and are cached on disk (``cache=True``,
as the CPU backend's) so that later runs skip the compiler. Under
``NUMBA_ENABLE_CUDASIM=1`` the same kernels run in Numba's CPU simulator, which
is how the tests check them without a GPU.
"""
from __future__ import annotations

from numba import config

from kernels.api import KERNELS
from kernels.numba_cuda.activation import (add, add_relu_forward, dropout_backward, dropout_forward, relu_backward,
                                          relu_forward)
from kernels.numba_cuda.conv import bias_add_nchw, bias_grad_nchw, col2im, im2col
from kernels.numba_cuda.gemm import bias_add, bias_grad, gemm
from kernels.numba_cuda.loss import softmax_xent_backward, softmax_xent_forward
from kernels.numba_cuda.memory import asarray, empty, synchronize, to_numpy, zeros
from kernels.numba_cuda.norm import batchnorm_backward, batchnorm_forward
from kernels.numba_cuda.optim import adam_step, sgd_step
from kernels.numba_cuda.pool import (conv_relu_pool_backward, conv_relu_pool_forward, global_avgpool_backward,
                                     global_avgpool_forward, maxpool_backward, maxpool_forward)

# What this backend is and can do (kernels.api.CAPABILITIES).
name = "cuda"
SYNC_EVERY = 50         # reading the loss waits for the GPU's queue to drain: read it every 50 steps
FUSE_BY_DEFAULT = True  # fused Conv-ReLU-MaxPool saves passes over device memory (scratchcnn.nn.plan)
# Kernels compile on first use (then load from the disk cache); Numba's simulator runs them as Python and
# compiles nothing, so there a warm-up step would only repeat a training step thread by thread.
COMPILES = not config.ENABLE_CUDASIM
CONV_BN = False         # Conv-BN-ReLU runs layer by layer on the GPU (docs/cuda.md)

__all__ = list(KERNELS)  # the contract, kernels/api.py
