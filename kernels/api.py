"""The kernel contract: the names every backend defines, what it says about itself, shared checks.

Every backend package (``numpy_ref``, ``numba_cpu``, ``numba_cuda``) defines each
name in ``KERNELS`` with the same signature (``tests/test_backend_parity.py``
compares them with ``inspect.signature``) and each attribute in
``CAPABILITIES``, through which code outside ``kernels/`` learns what a backend
can do without asking for its name. The documentation of each kernel lives
in ``kernels/numpy_ref/``, the reference that defines what it computes.

Layouts (all arrays C-contiguous):

- images are NCHW: ``x: (N, C, H, W)``;
- ``im2col`` columns are channel-major: ``cols: (C*kh*kw, N*H_out*W_out)``, row
  ``(c, i, j)`` holding input pixel ``(h_out*stride + i - padding,
  w_out*stride + j - padding)`` of channel ``c`` for every output position,
  column order ``(n, h_out, w_out)`` (Chellapilla, Puri & Simard, 2006);
- a convolution's GEMM output is channel-major too, ``(C_out, N*H_out*W_out)``;
  ``bias_add_nchw`` turns it into NCHW and ``bias_grad_nchw`` turns NCHW back.
"""
from __future__ import annotations

KERNELS = (
    # memory: allocation and host <-> backend transfer
    "empty", "zeros", "asarray", "to_numpy", "synchronize",
    # convolution as im2col + GEMM
    "im2col", "col2im", "gemm", "bias_add_nchw", "bias_grad_nchw",
    # Conv2D -> ReLU -> MaxPool2D fused on the GEMM output (no NCHW round trip)
    "conv_relu_pool_forward", "conv_relu_pool_backward",
    # dense layers
    "bias_add", "bias_grad",
    # activations, pooling, regularisation
    "relu_forward", "relu_backward",
    "maxpool_forward", "maxpool_backward",
    "global_avgpool_forward", "global_avgpool_backward",
    "dropout_forward", "dropout_backward",
    # residual blocks: the sum of the two paths with its ReLU, and the sum of their gradients
    "add_relu_forward", "add",
    # batch normalisation (per channel of NCHW, or per feature of (N, F))
    "batchnorm_forward", "batchnorm_backward",
    # loss
    "softmax_xent_forward", "softmax_xent_backward",
    # optimizers, updating parameters in place
    "adam_step", "sgd_step",
)

# Optional: Conv2D -> BatchNorm -> ReLU (-> MaxPool2D), and a residual block's Conv2D -> BatchNorm ->
# add the shortcut -> ReLU, as per-image convolution kernels with a folded-BN epilogue
# (kernels/numpy_ref/conv_bn.py), and the BN formulas those steps need on per-channel vectors
# (kernels/numpy_ref/norm.py). A backend that defines them says CONV_BN = True.
CONV_BN_KERNELS = (
    "conv2d_affine_forward", "conv2d_affine_backward", "bn_relu_forward", "bn_relu_backward",
    "bn_relu_pool_forward", "bn_relu_pool_backward", "bn_add_relu_forward", "bn_backward_sums",
    "batchnorm_batch_affine", "batchnorm_inference_affine", "batchnorm_backward_affine",
)

CAPABILITIES = (
    "name",             # str: "numpy", "cpu" or "cuda", for messages and files (never to branch on)
    "SYNC_EVERY",       # int: training steps between reads of the loss to the host (a read drains a GPU's queue)
    "FUSE_BY_DEFAULT",  # bool: whether models run fused kernels (scratchcnn.nn.plan) unless told otherwise
    "COMPILES",         # bool: whether kernels are compiled on first use (so a warm-up step is worth it)
    "CONV_BN",          # bool: whether the backend defines CONV_BN_KERNELS
)

__all__ = ["KERNELS", "CONV_BN_KERNELS", "CAPABILITIES", "conv_output_size", "check_nchw", "check_out",
           "gemm_shape"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a sliding window along one axis (pixels).

    ``out = (size + 2*padding - kernel) // stride + 1`` (Dumoulin & Visin, 2016,
    "A guide to convolution arithmetic for deep learning", Relationship 6).

    Raises
    ------
    ValueError
        If the window does not fit (``out < 1``) or stride/kernel are not positive.
    """
    if kernel < 1 or stride < 1 or padding < 0:
        raise ValueError(
            f"kernel ({kernel}) and stride ({stride}) must be >= 1 and padding ({padding}) >= 0")
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"a {kernel}-pixel window with padding {padding} does not fit an input of "
            f"{size} pixels (output size would be {out})")
    return out


def check_nchw(x, what: str = "x") -> tuple[int, int, int, int]:
    """Return ``(N, C, H, W)`` of a 4-D array, or raise ValueError naming its shape."""
    if len(x.shape) != 4:
        raise ValueError(f"{what} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    return tuple(int(s) for s in x.shape)


def check_out(out, shape: tuple, dtype, what: str) -> None:
    """Raise ValueError if a caller-supplied ``out`` array has the wrong shape or dtype."""
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"{what}: expected shape {tuple(shape)} and dtype {dtype}, "
            f"got shape {tuple(out.shape)} and dtype {out.dtype}")


def gemm_shape(a_shape, b_shape, trans_a: bool, trans_b: bool) -> tuple[int, int, int]:
    """Return ``(M, K, N)`` of ``op(a) @ op(b)``; raise ValueError if the shapes do not chain."""
    if len(a_shape) != 2 or len(b_shape) != 2:
        raise ValueError(f"gemm needs 2-D operands, got shapes {tuple(a_shape)} and {tuple(b_shape)}")
    m, k = (a_shape[1], a_shape[0]) if trans_a else (a_shape[0], a_shape[1])
    k2, n = (b_shape[1], b_shape[0]) if trans_b else (b_shape[0], b_shape[1])
    if k != k2:
        raise ValueError(
            f"gemm: inner dimensions differ: op(a) is {m}x{k}, op(b) is {k2}x{n} "
            f"(trans_a={trans_a}, trans_b={trans_b})")
    return int(m), int(k), int(n)
