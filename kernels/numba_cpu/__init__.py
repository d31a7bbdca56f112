"""Numba CPU kernels: the reference's loops compiled with ``@njit(parallel=True, cache=True)``.

Same names, arguments and results as ``kernels.numpy_ref`` (read that package
for what each kernel computes), in modules of the same names: ``gemm``,
``conv``, ``pool``, ``activation``, ``norm``, ``loss``, ``optim``, plus
``blas`` (BLAS called from Numba's threads). Memory functions are the host's
(``kernels.host_memory``). Each public function checks shapes and allocates
outputs in Python, then calls a compiled ``_core`` that loops over the data once.

How the work is split: ``prange`` hands each thread whole, independent units
(an image plane, a row of columns, a channel) so that no two threads ever
write the same element and no atomics or locks are needed; sums are
accumulated in float64 in a fixed order, so results do not depend on the
number of threads. The matrix products are single-threaded BLAS calls, one per
block of the output, run on the same threads (``blas``).

Compiled code is cached on disk (``cache=True``): the first run in a fresh
checkout compiles each kernel once per dtype; later runs load it. Importing
this package compiles nothing and changes no process setting; the command-line
tools set OpenMP's spin time at start-up (``scratchcnn.apps.cli.configure_process``).
"""
from __future__ import annotations

from kernels.api import CONV_BN_KERNELS, KERNELS
from kernels.host_memory import asarray, empty, synchronize, to_numpy, zeros
from kernels.numba_cpu.activation import (add, add_relu_forward, dropout_backward, dropout_forward, relu_backward,
                                         relu_forward)
from kernels.numba_cpu.bn_relu import (bn_add_relu_forward, bn_backward_sums, bn_relu_backward, bn_relu_forward,
                                      bn_relu_pool_backward, bn_relu_pool_forward)
from kernels.numba_cpu.conv_bn import conv2d_affine_backward, conv2d_affine_forward
from kernels.numba_cpu.conv import bias_add_nchw, bias_grad_nchw, col2im, im2col
from kernels.numba_cpu.gemm import bias_add, bias_grad, gemm
from kernels.numba_cpu.loss import softmax_xent_backward, softmax_xent_forward
from kernels.numba_cpu.norm import (batchnorm_backward, batchnorm_backward_affine, batchnorm_batch_affine,
                                   batchnorm_forward, batchnorm_inference_affine)
from kernels.numba_cpu.optim import adam_step, sgd_step
from kernels.numba_cpu.pool import (conv_relu_pool_backward, conv_relu_pool_forward, global_avgpool_backward,
                                    global_avgpool_forward, maxpool_backward, maxpool_forward)

# What this backend is and can do (kernels.api.CAPABILITIES).
name = "cpu"
SYNC_EVERY = 1          # the loss is already on the host: check it after every step
FUSE_BY_DEFAULT = True  # fused Conv-ReLU-MaxPool saves passes over memory (scratchcnn.nn.plan)
COMPILES = True         # kernels compile on first use (then load from the disk cache)
CONV_BN = True          # per-image convolution with a folded-BN epilogue (numba_cpu/conv_bn.py)

__all__ = [*KERNELS, *CONV_BN_KERNELS]  # the contract, kernels/api.py
