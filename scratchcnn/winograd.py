"""Running a 3x3 Conv2D by Winograd's minimal filtering instead of im2col + GEMM.

``WinogradConv`` is a step of a model's execution plan that runs one ``Conv2D``
layer (its parameters and gradients stay the layer's) with the backend's
Winograd kernels (``kernels.api.WINOGRAD_KERNELS``; the algorithm:
``kernels/numpy_ref/winograd.py``). ``winograd_plan`` swaps such steps in for
the convolutions they suit; the function computed is the same, up to float32
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

Off by default: ``SCRATCHCNN_WINOGRAD=1`` in the environment turns it on. Measured
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
"""
from __future__ import annotations

import os

__all__ = ["WinogradConv", "tile_size", "winograd_plan", "MIN_IN_CHANNELS"]

MIN_IN_CHANNELS = 8


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


class WinogradConv:
    """One Conv2D run by Winograd F(m x m, 3x3); same function, same parameters and gradients.

    Forward: ``U = filter_transform(W)``, ``V = input_transform(x)``,
    ``M[k] = U[k] @ V[k]`` for the ``(m+2)^2`` tile positions, ``y = output_transform(M) + b``.
    Backward (adjoints, in reverse): ``dM = output_adjoint(dy)``, ``dU[k] = dM[k] @ V[k]^T``,
    ``dW = filter_adjoint(dU)``, ``dV[k] = U[k]^T @ dM[k]``, ``dx = input_adjoint(dV)``.
    Every array lives in the layer's reusable buffers, so a step allocates nothing.
    Input sizes the tile rule turns down (``tile_size`` is None) run the layer's own im2col path.
    """

    def __init__(self, conv):
        self.conv = conv
        self._cache: dict = {}

    def forward(self, x, training=True):
        conv = self.conv
        n, _, h, w = x.shape
        m = tile_size(conv, h, w)
        if m is None:
            self._cache = {"fallback": True}
            return conv.forward(x, training)
        K, c_out, c_in, pad = conv.K, conv.out_channels, conv.in_channels, conv.padding
        conv._check_input(x, 4, 1, c_in, "in_channels")
        h_out, w_out = h + 2 * pad - 2, w + 2 * pad - 2
        tiles = n * (-(-h_out // m)) * (-(-w_out // m))
        a2 = (m + 2) ** 2
        u = K.winograd_filter_transform(conv.params["W"], m, out=conv._buffer("wino_u", (a2, c_out, c_in), x.dtype))
        v = K.winograd_input_transform(x, m, pad, out=conv._buffer("wino_v", (a2, c_in, tiles), x.dtype))
        mt = K.batched_gemm(u, v, out=conv._buffer("wino_m", (a2, c_out, tiles), x.dtype))
        out = K.winograd_output_transform(mt, conv.bias_or_zeros(), n, h_out, w_out, m,
                                          out=conv._buffer("wino_out", (n, c_out, h_out, w_out), x.dtype))
        self._cache = {"fallback": False, "u": u, "v": v, "m": m, "x_shape": tuple(x.shape)}
        return out

    def backward(self, dout):
        conv = self.conv
        if self._cache.pop("fallback"):
            return conv.backward(dout)
        K = conv.K
        u, v, m, x_shape = (self._cache.pop(k) for k in ("u", "v", "m", "x_shape"))
        # M is spent once the output is transformed, so its buffer takes dM.
        dm, _ = K.winograd_output_adjoint(dout, m, out=conv._buffer("wino_m", (u.shape[0], conv.out_channels,
                                                                                v.shape[2]), dout.dtype),
                                          db=conv.bias_grad_or_scratch(dout.dtype))
        du = K.batched_gemm(dm, v, trans_b=True, out=conv._buffer("wino_du", u.shape, dout.dtype))
        K.winograd_filter_adjoint(du, m, out=conv.grads["W"])
        if not conv.requires_input_grad:
            return None
        dv = K.batched_gemm(u, dm, trans_a=True, out=v)  # V is spent once dU is known: it takes dV
        return K.winograd_input_adjoint(dv, x_shape, m, conv.padding,
                                        out=conv._buffer("dx", x_shape, dout.dtype))


def winograd_plan(plan: list, K) -> list:
    """``plan`` with every plain 3x3 Conv2D step that may suit Winograd wrapped in ``WinogradConv``.

    Only when the environment sets ``SCRATCHCNN_WINOGRAD=1`` (see the module docstring for
    why it is off by default) and on backends with Winograd kernels (``K.WINOGRAD``). The input size is known
    only at the first forward, so ``WinogradConv`` decides per call with ``tile_size``
    and falls back to im2col + GEMM when it says None.
    """
    from scratchcnn.layers.conv2d import Conv2D

    if not getattr(K, "WINOGRAD", False) or os.environ.get("SCRATCHCNN_WINOGRAD", "0") != "1":
        return list(plan)
    return [WinogradConv(step) if type(step) is Conv2D and tile_size(step, 3 * 4, 3 * 4) is not None else step
            for step in plan]
