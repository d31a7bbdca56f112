"""NumPy reference kernels: the readable definition of every kernel in scratchcnn.

Read this package first. Each function computes one step of a CNN's forward or
backward pass with whole-array NumPy operations, no Python loop over pixels or
images: the only loops run over the ``kh x kw`` offsets of a window, as in
Chainer's ``im2col_cpu``. The Numba CPU and CUDA backends compute the same
numbers faster, and the tests hold them to this package.

=================  ==============================================================
module             kernels
=================  ==============================================================
``gemm``           ``gemm``; the dense layer's ``bias_add``, ``bias_grad``
``conv``           ``im2col``, ``col2im``, ``bias_add_nchw``, ``bias_grad_nchw``
``pool``           ``maxpool_forward/backward``, ``conv_relu_pool_forward/backward``,
                   ``global_avgpool_forward/backward``
``activation``     ``relu_forward/backward``, ``dropout_forward/backward``, ``add``, ``add_relu_forward``
``norm``           ``batchnorm_forward/backward`` and the fused step's ``batchnorm_*_affine``
``loss``           ``softmax_xent_forward/backward``
``optim``          ``adam_step``, ``sgd_step``
``conv_bn``        Conv2D -> BatchNorm -> ReLU (-> MaxPool2D): ``conv2d_affine_forward/backward``,
                   ``bn_relu_forward/backward``, ``bn_relu_pool_forward/backward``
=================  ==============================================================

``winograd.py`` (Winograd F(2x2, 3x3) and F(4x4, 3x3), notebook 8) is a reference
of its own, outside the contract: no backend runs it (``benchmarks/README.md``
has the measurements that took it out).

Memory (``empty``, ``zeros``, ``asarray``, ``to_numpy``, ``synchronize``) is
``kernels.host_memory``, shared with the ``cpu`` backend.

Conventions: arrays are C-contiguous NumPy arrays; images are NCHW; float32 in
training, float64 in gradient checks (every kernel keeps its input's dtype).
Kernels that take ``out=`` write into it when given and allocate otherwise, so
that layers can reuse their buffers between steps.
"""
from __future__ import annotations

from kernels.api import CONV_BN_KERNELS, KERNELS
from kernels.host_memory import asarray, empty, synchronize, to_numpy, zeros
from kernels.numpy_ref.activation import (add, add_relu_forward, dropout_backward, dropout_forward, relu_backward,
                                         relu_forward)
from kernels.numpy_ref.conv_bn import (bn_add_relu_forward, bn_backward_sums, bn_relu_backward, bn_relu_forward,
                                      bn_relu_pool_backward, bn_relu_pool_forward, conv2d_affine_backward,
                                      conv2d_affine_forward)
from kernels.numpy_ref.conv import bias_add_nchw, bias_grad_nchw, col2im, im2col
from kernels.numpy_ref.gemm import bias_add, bias_grad, gemm
from kernels.numpy_ref.loss import softmax_xent_backward, softmax_xent_forward
from kernels.numpy_ref.norm import (batchnorm_backward, batchnorm_backward_affine, batchnorm_batch_affine,
                                   batchnorm_forward, batchnorm_inference_affine)
from kernels.numpy_ref.optim import adam_step, sgd_step
from kernels.numpy_ref.pool import (conv_relu_pool_backward, conv_relu_pool_forward, global_avgpool_backward,
                                    global_avgpool_forward, maxpool_backward, maxpool_forward)

# What this backend is and can do (kernels.api.CAPABILITIES).
name = "numpy"
SYNC_EVERY = 1           # reading the loss back costs nothing: check it after every step
FUSE_BY_DEFAULT = False  # the reference runs layer by layer, the plainest way to read a step
COMPILES = False         # nothing is compiled: no warm-up needed
CONV_BN = True           # the readable definition: reference kernels composed (numpy_ref/conv_bn.py)

__all__ = [*KERNELS, *CONV_BN_KERNELS]  # the contract, kernels/api.py
