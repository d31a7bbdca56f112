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
Conv2D, ReLU, MaxPool2D     ``ConvReLUPool``        im2col, gemm, ``conv_relu_pool_forward``;
                                                    ``conv_relu_pool_backward``, gemm, col2im
==========================  ======================  =========================================

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

import numpy as np

from scratchcnn.layers import Conv2D, Layer, MaxPool2D, ReLU

__all__ = ["FusedStep", "ConvReLUPool", "FusionRule", "FUSION_RULES", "make_plan", "step_layers",
           "describe"]


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

    def _bias(self, conv, dtype):
        """``conv.params["b"]``, or a zero vector when the convolution has no bias."""
        if conv.bias:
            return conv.params["b"]
        zero = self._workspace.get("zero_bias")
        if zero is None or zero.dtype != dtype:
            zero = self._workspace["zero_bias"] = self.K.zeros((conv.out_channels,), dtype)
        return zero


@dataclass(frozen=True)
class FusionRule:
    """Replace each run of layers of the classes ``pattern`` (for which ``applies`` is true) by ``step``."""

    pattern: tuple[type, ...]
    step: type
    applies: Callable[[tuple], bool] = lambda layers: True


FUSION_RULES: list[FusionRule] = [
    FusionRule((Conv2D, ReLU, MaxPool2D), ConvReLUPool),
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
