"""The execution plan: the steps that run a model's layers, with runs of layers fused into one kernel.

``Sequential.build`` makes the plan with ``make_plan(layers, fuse)``; ``forward``
runs its steps in order and ``backward`` in reverse, and ``Sequential.summary``
prints it. Unfused, every layer is a step of its own and runs its own
``forward``/``backward`` (``Sequential(..., fuse=False)``, the default on the
``numpy`` backend, so a breakpoint in ``ReLU.forward`` fires). Fused, each run of
layers that a rule of ``FUSION_RULES`` matches becomes one ``FusedStep``, which
computes exactly the same function with fewer passes over memory: the layers
keep their parameters and gradients, only the execution changes. Whether a
backend fuses by default is its ``FUSE_BY_DEFAULT`` (``kernels.api.CAPABILITIES``).

==========================  ======================  =========================================
rule                        step                    kernels
==========================  ======================  =========================================
Conv2D, BatchNorm2D, ReLU,  ``ConvBNReLU``          ``conv2d_forward``, ``bn_relu_pool_forward``;
MaxPool2D (backends with                            ``bn_relu_pool_backward``, ``conv2d_backward``
``CONV_BN``)                                        (``kernels.api.CONV_BN_KERNELS``)
Conv2D, BatchNorm2D, ReLU   ``ConvBNReLU``          the same without pooling: ``bn_relu_forward``,
(backends with ``CONV_BN``)                         ``bn_relu_backward``
Conv2D, ReLU, MaxPool2D     ``ConvReLUPool``        im2col, gemm, ``conv_relu_pool_forward``;
                                                    ``conv_relu_pool_backward``, gemm, col2im
Conv2D (3x3, stride 1,      ``WinogradConv``        Winograd transforms, ``batched_gemm`` and
>= 8 input channels; only                           their adjoints (``kernels.api.WINOGRAD_KERNELS``)
with SCRATCHCNN_WINOGRAD=1)
==========================  ======================  =========================================

Conv-BN-ReLU (``ConvBNReLU``)
-----------------------------
vgg-small is four Conv2D-BatchNorm2D-ReLU blocks, two of them pooled. Unfused,
each block makes seven passes over its largest array (im2col's columns, the
GEMM's channel-major output, its NCHW copy, BN's statistics, normalisation,
ReLU, pooling) and as many back. Fused, the convolution runs image by image
(its columns stay in L2), writes NCHW and sums the batch statistics in its
epilogue, BN and ReLU (and pooling) are one more pass, and the backward
folds BN's gradient into the convolution's (class docstring). Measured
2026-11-30 on the project's 2-core Xeon (quiet; vgg-small, batch 64, one
process, five interleaved rounds, MKL's sgemm): training 889 images/s fused
against 507 unfused; inference 2,942 against 1,243 (and 1,374 for the unfused
plan of ``fold_batchnorm``'s copy). The CUDA backend has no such kernels
(``CONV_BN = False``) and runs the layers one by one (docs/cuda.md).

Winograd convolution (``WinogradConv``)
---------------------------------------
Running a 3x3 Conv2D by Winograd's minimal filtering instead of im2col + GEMM.

``WinogradConv`` is a step of a model's execution plan that runs one ``Conv2D``
layer (its parameters and gradients stay the layer's) with the backend's
Winograd kernels (``kernels.api.WINOGRAD_KERNELS``; the algorithm:
``kernels/numpy_ref/winograd.py``). its rule swaps such steps in for the
convolutions they suit; the function computed is the same, up to float32
rounding (bounds in ``tests/test_winograd.py``).

Which convolutions, and which tile (``tile_size``): 3x3 filters, stride 1,
padding 0 or 1, at least ``MIN_IN_CHANNELS`` input channels. With one input
channel (a network's first layer) the GEMM stage has an inner dimension of 1 and
the tile transforms cost more than the multiplications saved, so im2col + GEMM
stays. F(4x4, 3x3) saves 4x the multiplications against F(2x2, 3x3)'s 2.25x and
is the choice where its tiles cover the output with little waste. Its float32
error is larger: on vgg-small's layers, relative to the output's largest entry,
5.1e-6 against 3.1e-7 for F(2x2) and 8.2e-7 for im2col + GEMM (measured
2026-11-30, ``tests/test_winograd.py``), still far below the noise of a
mini-batch gradient.

Off by default: ``SCRATCHCNN_WINOGRAD=1`` in the environment turns it on. Its rule comes
after ``ConvReLUPool`` (the classic network keeps that) and before ``ConvBNReLU``: asked
for, it takes vgg-small's convolutions with 8 or more input channels, whose BN and ReLU
then run layer by layer: on 2026-11-30 (quiet machine, MKL, ``compare.py --winograd-ablation``)
that trained vgg-small at 235 images/s against 851 for the fused ``ConvBNReLU`` plan, and
inferred at 964 against 2,899. Measured
2026-11-30 on the project's 2-core machine while it was busy (load average 13-20;
one thread, so that no barrier waits for a descheduled thread; median ms at
vgg-small's 32->32 channel, 28x28, batch-64 convolution): the element-wise stage
of F(4x4) takes 29 ms where im2col's GEMM takes 352, but the tile transforms as
written cost more than that saves (input transform 255 ms against im2col's 111,
output transform 182, their adjoints 202 and 250), so a whole forward plus
backward was 1.2-2.7x slower than im2col + GEMM at each of vgg-small's three
shapes. What stands in the way: transforms specialised to the constant, sparse
B, G and A of each tile size (the generic loops here multiply by every entry) and
vectorised across tiles. ``benchmarks/compare.py --winograd-ablation`` adds a
``cpu`` contender with Winograd on, to measure it again on a quiet machine.

Adding a fusion rule
--------------------
1. The kernels: add their names to ``kernels.api.KERNELS``; define them in
   ``kernels/numpy_ref/`` by composing the unfused reference kernels (that is
   the definition the other backends are held to), then in ``numba_cpu`` and
   ``numba_cuda``; compare them with the reference in ``tests/test_backend_parity.py``
   (and ``tests/cudasim/``).
2. The step: a subclass of ``FusedStep`` whose ``forward(x, training)`` and
   ``backward(dout)`` read the layers' ``params``, write their ``grads`` (all of
   them, overwriting), take work arrays from ``self._buffer`` and return what the
   last layer's ``forward`` / the first layer's ``backward`` would (None for the
   input gradient when ``layers[0].requires_input_grad`` is off). ``kernels``
   lists what it runs, for ``summary``.
3. The rule: append ``FusionRule(pattern, step, applies)`` to ``FUSION_RULES``:
   ``pattern`` the layer classes in order, ``applies(layers)`` any further
   condition on the matched layers (say, a 3x3 stride-1 convolution),
   ``step`` the class. At each position the rules are tried in order and the
   first that matches wins, so put a longer or more specific rule first.
4. The test: ``tests/test_plan.py`` trains every preset fused and unfused and
   compares outputs, gradients and weights; add a network in which the new rule
   fires (``test_every_fusion_rule_fires``) checks that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import os

import numpy as np

from scratchcnn.nn.layers import BatchNorm2D, Conv2D, Layer, MaxPool2D, ReLU

__all__ = ["FusedStep", "ConvReLUPool", "ConvBNReLU", "WinogradConv", "FusionRule", "FUSION_RULES", "make_plan",
           "step_layers",
           "describe", "tile_size", "winograd_applies", "MIN_IN_CHANNELS"]

MIN_IN_CHANNELS = 8  # Winograd: below this the tile transforms cost more than the GEMM saves


class FusedStep:
    """A run of layers executed as one step. Subclasses define ``forward``, ``backward`` and ``kernels``.

    Attributes
    ----------
    layers : tuple of Layer
        The layers it runs, in order; their ``params``/``grads`` are the step's.
    kernels : tuple of str
        Names of the kernels it calls, forward then backward (for ``summary``).
    """

    kernels: tuple[str, ...] = ()

    def __init__(self, *layers: Layer):
        self.layers = layers
        self._cache: dict = {}
        self._workspace: dict = {}

    @property
    def K(self):
        """The backend of the layers (``Sequential.build`` places them all on one)."""
        return self.layers[0].K

    @property
    def name(self) -> str:
        return "+".join(layer.name for layer in self.layers)

    _buffer = Layer._buffer  # reusable work arrays, as a layer's: allocated once per shape and dtype

    def _constant(self, key, size, value, dtype):
        """A (size,) vector filled with ``value`` on the step's backend, made once per size and dtype."""
        vec = self._workspace.get(key)
        if vec is None or vec.dtype != dtype or tuple(vec.shape) != (size,):
            vec = self._workspace[key] = self.K.asarray(np.full(size, value, dtype))
        return vec

    def _bias(self, conv, dtype):
        """``conv.params["b"]``, or a zero vector when the convolution has no bias."""
        return conv.params["b"] if conv.bias else self._constant("zeros", conv.out_channels, 0.0, dtype)

    def forward(self, x, training=True):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError


class ConvReLUPool(FusedStep):
    """Conv2D -> ReLU -> MaxPool2D as one step: the same function, two passes over memory fewer.

    Unfused, the convolution's output makes four trips through memory between
    the GEMMs (bias + reorder to NCHW, ReLU, pool, and back again for the
    gradient). Fused, ``conv_relu_pool_forward`` reads the GEMM's channel-major
    output ``y`` once and writes only the pooled map (ReLU is monotone, so
    ``maxpool(relu(z)) = relu(maxpool(z))``), and ``conv_relu_pool_backward``
    writes the gradient in the channel-major layout the weight and input GEMMs
    read. The im2col + GEMM around it are Conv2D's (see its Notes).
    """

    kernels = ("im2col", "gemm", "conv_relu_pool_forward", "conv_relu_pool_backward", "gemm", "gemm",
               "col2im")

    def forward(self, x, training=True):
        conv, pool = self.layers[0], self.layers[2]
        K, (kh, kw) = self.K, conv.kernel_size
        conv._check_input(x, 4, 1, conv.in_channels, "in_channels")
        n = x.shape[0]
        c, h, w = conv.output_shape(x.shape[1:])
        cols = K.im2col(x, kh, kw, conv.stride, conv.padding,
                        out=self._buffer("cols", (conv.in_channels * kh * kw, n * h * w), x.dtype))
        y = K.gemm(conv.params["W"].reshape(c, -1), cols, out=self._buffer("y", (c, n * h * w), x.dtype))
        shape = (n,) + pool.output_shape((c, h, w))
        out, argmax = K.conv_relu_pool_forward(
            y, self._bias(conv, x.dtype), n, h, w, pool.kernel_size, pool.stride,
            out=self._buffer("out", shape, x.dtype), argmax=self._buffer("argmax", shape, np.int8))
        self._cache = {"cols": cols, "x_shape": tuple(x.shape), "out": out, "argmax": argmax, "hw": (h, w)}
        return out

    def backward(self, dout):
        conv, pool = self.layers[0], self.layers[2]
        K, (kh, kw) = self.K, conv.kernel_size
        cache, self._cache = self._cache, {}
        (h, w), c = cache["hw"], conv.out_channels
        db = conv.grads["b"] if conv.bias else self._buffer("db_unused", (c,), dout.dtype)
        # The GEMM output y is spent once pooled, so its memory takes the gradient: a step then
        # touches fewer megabytes and more of them stay in the cache.
        dy, _ = K.conv_relu_pool_backward(dout, cache["argmax"], cache["out"], h, w, pool.kernel_size,
                                          pool.stride, dy=self._buffer("y", (c, dout.shape[0] * h * w), dout.dtype),
                                          db=db)
        K.gemm(dy, cache["cols"], trans_b=True, out=conv.grads["W"].reshape(c, -1))
        if not conv.requires_input_grad:
            return None
        # cols is spent once dW is known, so its memory takes dcols.
        dcols = K.gemm(conv.params["W"].reshape(c, -1), dy, trans_a=True, out=cache["cols"])
        return K.col2im(dcols, cache["x_shape"], kh, kw, conv.stride, conv.padding,
                        out=self._buffer("dx", cache["x_shape"], dout.dtype))



class ConvBNReLU(FusedStep):
    """Conv2D -> BatchNorm2D -> ReLU (-> MaxPool2D) as one step: the same function, the same parameters.

    Training forward: ``conv2d_forward`` convolves one image at a time straight
    into NCHW and sums each channel's values and squares on the way out, so
    the batch statistics cost no extra pass; BN then folds into one scale and
    shift per channel, ``scale = gamma*inv_std``, ``shift = beta - mean*scale``,
    and ``bn_relu(_pool)_forward`` applies them with the ReLU (and the pooling)
    in one pass. Backward: ``bn_relu(_pool)_backward`` takes the gradient through
    the ReLU and pooling and sums it (``dbeta``) and its product with ``x_hat``
    (``dgamma``); BN's backward is then a per-channel linear map of that
    gradient and the convolution's output (``kernels/numpy_ref/conv_bn.py``),
    which ``conv2d_backward`` applies image by image as it computes the weight
    and input gradients. Inference folds the running statistics into the
    convolution's epilogue: Conv-BN-ReLU is one kernel.
    Running statistics are updated as ``BatchNorm2D`` does (biased variance to
    normalise, unbiased in the running average; Ioffe & Szegedy, 2015, Algorithm 1-2).
    """

    kernels = ("conv2d_forward", "bn_relu_forward", "bn_relu_pool_forward", "bn_relu_backward",
               "bn_relu_pool_backward", "conv2d_backward")

    def __init__(self, *layers):
        super().__init__(*layers)
        self.pool = layers[3] if len(layers) == 4 else None
        self.kernels = tuple(k for k in type(self).kernels if ("pool" in k) == (self.pool is not None)
                             or k.startswith("conv2d"))

    def forward(self, x, training=True):
        conv, bn = self.layers[0], self.layers[1]
        K, pool, dtype = self.K, self.pool, x.dtype
        conv._check_input(x, 4, 1, conv.in_channels, "in_channels")
        n = x.shape[0]
        c, h, w = conv.output_shape(x.shape[1:])
        gamma, beta = bn.params["gamma"], bn.params["beta"]
        bias = self._bias(conv, dtype)
        if training:
            stats = self._buffer("stats", (2, c), np.float64)
            z, _ = K.conv2d_forward(x, conv.params["W"], self._constant("ones", c, 1.0, dtype), bias, False,
                                    conv.stride, conv.padding, out=self._buffer("z", (n, c, h, w), dtype),
                                    stats=stats)
            m = n * h * w
            mean = stats[0] / m
            var = np.maximum(stats[1] / m - mean * mean, 0.0)  # E[z^2] - E[z]^2, summed in float64
            for key, batch in (("running_mean", mean), ("running_var", var * (m / max(m - 1, 1)))):
                running = bn.buffers[key]
                running *= 1 - bn.momentum
                running += (bn.momentum * batch).astype(dtype)
            inv_std = 1.0 / np.sqrt(var + bn.eps)
            scale = (gamma * inv_std).astype(dtype)
            shift = (beta - mean * scale).astype(dtype)
            if pool is None:
                out, argmax = K.bn_relu_forward(z, scale, shift, out=self._buffer("out", z.shape, dtype)), None
            else:
                shape = (n,) + pool.output_shape((c, h, w))
                out, argmax = K.bn_relu_pool_forward(z, scale, shift, pool.kernel_size, pool.stride,
                                                     out=self._buffer("out", shape, dtype),
                                                     argmax=self._buffer("argmax", shape, np.int8))
            self._cache = {"x": x, "z": z, "out": out, "argmax": argmax, "mean": mean.astype(dtype),
                           "inv_std": inv_std.astype(dtype)}
            return out
        # Inference: the running statistics fold into the convolution's epilogue (with the ReLU when
        # no pooling follows), scale*conv + beta + (bias - running_mean)*scale.
        inv_std = 1.0 / np.sqrt(bn.buffers["running_var"] + bn.eps)
        scale = (gamma * inv_std).astype(dtype)
        shift = (beta + (bias - bn.buffers["running_mean"]) * scale).astype(dtype)
        z, _ = K.conv2d_forward(x, conv.params["W"], scale, shift, pool is None, conv.stride, conv.padding,
                                out=self._buffer("z", (n, c, h, w), dtype))
        self._cache = {}
        if pool is None:
            return z
        shape = (n,) + pool.output_shape((c, h, w))
        ones, zeros = self._constant("ones", c, 1.0, dtype), self._constant("zeros", c, 0.0, dtype)
        return K.bn_relu_pool_forward(z, ones, zeros, pool.kernel_size, pool.stride,
                                      out=self._buffer("out", shape, dtype),
                                      argmax=self._buffer("argmax", shape, np.int8))[0]

    def backward(self, dout):
        conv, bn, pool, K = self.layers[0], self.layers[1], self.pool, self.K
        cache, self._cache = self._cache, {}
        if not cache:
            raise RuntimeError(f"{self.name}: backward needs a training-mode forward pass first (BatchNorm's "
                               "gradient goes through the batch statistics; inference folds them away)")
        x, z, out = cache["x"], cache["z"], cache["out"]
        dtype, c = z.dtype, conv.out_channels
        mean, inv_std = cache["mean"], cache["inv_std"]
        sums = self._buffer("sums", (2, c), np.float64)
        g = self._buffer("g", z.shape, dtype)
        if pool is None:
            K.bn_relu_backward(dout, out, z, mean, inv_std, g=g, sums=sums)
        else:
            K.bn_relu_pool_backward(dout, cache["argmax"], out, z, mean, inv_std, pool.kernel_size, pool.stride,
                                    g=g, sums=sums)
        dbeta, dgamma = sums[0], sums[1]
        bn.grads["beta"][...] = dbeta
        bn.grads["gamma"][...] = dgamma
        # BN's backward, dz = k/M (M g - dbeta - x_hat dgamma) with k = gamma*inv_std, as a linear
        # map of g and z per channel (kernels/numpy_ref/conv_bn.py), applied inside conv2d_backward.
        m = z.size // c
        k = bn.params["gamma"].astype(np.float64) * inv_std
        z_scale = -k * inv_std * dgamma / m
        shift = k * (inv_std * dgamma * mean - dbeta) / m
        if conv.bias:  # db = sum(dz) = k*dbeta + z_scale*sum(z) + shift*M, with sum(z) = M*mean
            conv.grads["b"][...] = k * dbeta + z_scale * m * mean + shift * m
        _, dx = K.conv2d_backward(g, z, k.astype(dtype), z_scale.astype(dtype), shift.astype(dtype), x,
                                  conv.params["W"], conv.stride, conv.padding, conv.requires_input_grad,
                                  dw=conv.grads["W"], dx=self._buffer("dx", x.shape, dtype)
                                  if conv.requires_input_grad else None)
        return dx


def tile_size(conv, height: int, width: int):
    """The Winograd output tile m (2 or 4) for ``conv`` on (height, width) inputs, or None for im2col + GEMM.

    Needs a 3x3 kernel, stride 1, padding 0 or 1 and ``MIN_IN_CHANNELS`` input channels
    (module docstring). F(4x4) unless more than a quarter of its tiles' outputs would fall
    outside the image (a 6x6 output, say), where F(2x2) wastes less.
    """
    if conv.kernel_size != (3, 3) or conv.stride != 1 or conv.padding not in (0, 1):
        return None
    if conv.in_channels < MIN_IN_CHANNELS:
        return None
    h_out, w_out = height + 2 * conv.padding - 2, width + 2 * conv.padding - 2
    covered = (-(-h_out // 4) * 4) * (-(-w_out // 4) * 4)
    return 4 if h_out * w_out >= 0.75 * covered else 2


def winograd_applies(layers) -> bool:
    """The Winograd rule's condition: switched on (``SCRATCHCNN_WINOGRAD=1``), a backend with the
    kernels (``WINOGRAD``), and a convolution ``tile_size`` accepts (checked again per input size)."""
    conv = layers[0]
    return (os.environ.get("SCRATCHCNN_WINOGRAD", "0") == "1" and getattr(conv.K, "WINOGRAD", False)
            and tile_size(conv, 12, 12) is not None)


class WinogradConv(FusedStep):
    """One Conv2D run by Winograd F(m x m, 3x3): the same function, the same parameters and gradients.

    Forward: ``U = filter_transform(W)``, ``V = input_transform(x)``,
    ``M[k] = U[k] @ V[k]`` for the ``(m+2)^2`` tile positions, ``y = output_transform(M) + b``.
    Backward (the adjoints, in reverse): ``dM = output_adjoint(dy)``, ``dU[k] = dM[k] @ V[k]^T``,
    ``dW = filter_adjoint(dU)``, ``dV[k] = U[k]^T @ dM[k]``, ``dx = input_adjoint(dV)``.
    Every array lives in reusable buffers, so a step allocates nothing. Input sizes for
    which ``tile_size`` says None run the layer's own im2col path.
    """

    kernels = ("winograd_filter_transform", "winograd_input_transform", "batched_gemm",
               "winograd_output_transform", "winograd_output_adjoint", "batched_gemm",
               "winograd_filter_adjoint", "batched_gemm", "winograd_input_adjoint")

    def forward(self, x, training=True):
        conv = self.layers[0]
        n, _, h, w = x.shape
        m = tile_size(conv, h, w)
        if m is None:
            self._cache = {"fallback": True}
            return conv.forward(x, training)
        K, c_out, c_in, pad = self.K, conv.out_channels, conv.in_channels, conv.padding
        conv._check_input(x, 4, 1, c_in, "in_channels")
        h_out, w_out = h + 2 * pad - 2, w + 2 * pad - 2
        tiles = n * (-(-h_out // m)) * (-(-w_out // m))
        a2 = (m + 2) ** 2
        u = K.winograd_filter_transform(conv.params["W"], m, out=self._buffer("u", (a2, c_out, c_in), x.dtype))
        v = K.winograd_input_transform(x, m, pad, out=self._buffer("v", (a2, c_in, tiles), x.dtype))
        mt = K.batched_gemm(u, v, out=self._buffer("m", (a2, c_out, tiles), x.dtype))
        bias = self._bias(conv, x.dtype)
        out = K.winograd_output_transform(mt, bias, n, h_out, w_out, m,
                                          out=self._buffer("out", (n, c_out, h_out, w_out), x.dtype))
        self._cache = {"fallback": False, "u": u, "v": v, "m": m, "x_shape": tuple(x.shape)}
        return out

    def backward(self, dout):
        conv = self.layers[0]
        cache, self._cache = self._cache, {}
        if cache["fallback"]:
            return conv.backward(dout)
        K, u, v, m, x_shape = self.K, cache["u"], cache["v"], cache["m"], cache["x_shape"]
        c_out = conv.out_channels
        db = conv.grads["b"] if conv.bias else self._buffer("db_unused", (c_out,), dout.dtype)
        # M is spent once the output is transformed, so its buffer takes dM.
        dm, _ = K.winograd_output_adjoint(dout, m, out=self._buffer("m", (u.shape[0], c_out, v.shape[2]),
                                                                     dout.dtype), db=db)
        du = K.batched_gemm(dm, v, trans_b=True, out=self._buffer("du", u.shape, dout.dtype))
        K.winograd_filter_adjoint(du, m, out=conv.grads["W"])
        if not conv.requires_input_grad:
            return None
        dv = K.batched_gemm(u, dm, trans_a=True, out=v)  # V is spent once dU is known: it takes dV
        return K.winograd_input_adjoint(dv, x_shape, m, conv.padding, out=self._buffer("dx", x_shape, dout.dtype))



@dataclass(frozen=True)
class FusionRule:
    """Replace each run of layers of the classes ``pattern`` (for which ``applies`` is true) by ``step``."""

    pattern: tuple[type, ...]
    step: type
    applies: Callable[[tuple], bool] = lambda layers: True


def conv_bn_applies(layers) -> bool:
    """The Conv-BN-ReLU rules' condition: a backend with ``CONV_BN_KERNELS`` (the CPU backends)."""
    return bool(getattr(layers[0].K, "CONV_BN", False))


# Winograd, when asked for (SCRATCHCNN_WINOGRAD=1), wins over Conv-BN-ReLU: an explicit request
# is what runs, with BN and ReLU then layer by layer.
FUSION_RULES: list[FusionRule] = [
    FusionRule((Conv2D, ReLU, MaxPool2D), ConvReLUPool),
    FusionRule((Conv2D,), WinogradConv, winograd_applies),
    FusionRule((Conv2D, BatchNorm2D, ReLU, MaxPool2D), ConvBNReLU, conv_bn_applies),
    FusionRule((Conv2D, BatchNorm2D, ReLU), ConvBNReLU, conv_bn_applies),
]


def make_plan(layers, fuse: bool) -> list:
    """The steps that run ``layers``: the layers themselves, or fused steps where a rule matches.

    Layers match a rule's pattern by exact class (a subclass of ReLU may do
    something else). Returns a list of Layer and FusedStep objects, in order.
    """
    plan, i = [], 0
    while i < len(layers):
        for rule in FUSION_RULES if fuse else ():
            run = tuple(layers[i:i + len(rule.pattern)])
            if tuple(type(layer) for layer in run) == rule.pattern and rule.applies(run):
                plan.append(rule.step(*run))
                i += len(run)
                break
        else:
            plan.append(layers[i])
            i += 1
    return plan


def step_layers(step) -> tuple:
    """The layers a plan step runs: a fused step's ``layers``, or the layer itself."""
    return step.layers if isinstance(step, FusedStep) else (step,)


def describe(plan) -> list[tuple[str, str]]:
    """``(layers, how they run)`` for every step, as ``Sequential.summary`` prints them."""
    rows = []
    for step in plan:
        if isinstance(step, FusedStep):
            kernels = ", ".join(dict.fromkeys(step.kernels))
            rows.append((" + ".join(layer.name for layer in step.layers),
                         f"fused: {type(step).__name__} ({kernels})"))
        else:
            rows.append((step.name, f"{type(step).__name__}.forward / .backward"))
    return rows
