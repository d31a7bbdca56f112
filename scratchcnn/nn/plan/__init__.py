"""The execution plan: the steps that run a model's layers, with runs of layers fused into one step.

``Sequential.build`` makes the plan with ``make_plan(layers, fuse)``; ``forward``
runs its steps in order and ``backward`` in reverse (the step protocol:
``scratchcnn.nn.step``), and ``Sequential.summary`` prints ``describe(plan)``.
Unfused, every layer is a step of its own and runs its own
``forward``/``backward`` (``Sequential(..., fuse=False)``, the default on the
``numpy`` backend, so a breakpoint in ``ReLU.forward`` fires). Fused, each run of
layers that a rule of ``FUSION_RULES`` matches becomes one ``FusedStep``, which
computes exactly the same function with fewer passes over memory: the layers
keep their parameters and gradients, only the execution changes. Whether a
backend fuses by default is its ``FUSE_BY_DEFAULT`` (``kernels.api.CAPABILITIES``).

==========================  ======================  =========================================
rule                        step                    kernels
==========================  ======================  =========================================
Conv2D, BatchNorm2D, ReLU,  ``ConvBNReLU``          ``conv2d_affine_forward``, ``bn_relu_pool_forward``;
MaxPool2D (backends with    (``conv_bn_relu.py``)   ``bn_relu_pool_backward``, ``conv2d_affine_backward``
``CONV_BN``)                                        (``kernels.api.CONV_BN_KERNELS``)
Conv2D, BatchNorm2D, ReLU   ``ConvBNReLU``          the same without pooling: ``bn_relu_forward``,
(backends with ``CONV_BN``)                         ``bn_relu_backward``
Conv2D, ReLU, MaxPool2D     ``ConvReLUPool``        im2col, gemm, ``conv_relu_pool_forward``;
                            (``conv_relu_pool.py``) ``conv_relu_pool_backward``, gemm, col2im
a ``Residual`` whose main   ``ConvBNAddReLU``       ``conv2d_affine_forward``, ``bn_add_relu_forward``
path ends Conv2D,           (``conv_bn_add_relu``)  (inference: ``conv2d_affine_forward`` with
BatchNorm2D, shortcut                               ``residual``); ``bn_relu_backward``,
identity or Conv2D,                                 ``bn_backward_sums``, ``conv2d_affine_backward``
BatchNorm2D (``CONV_BN``)
==========================  ======================  =========================================

The last rule is a block's: ``Residual.plan`` calls ``block_plan``, which plans the
main path's other layers with the rules above and makes the block's end (its last
Conv-BN, the shortcut, the sum and the ReLU) one ``ConvBNAddReLU`` step.

Why these: the fused Conv-BN-ReLU step trains vgg-small about 1.7x faster than
its layers one by one on the project's CPU, and infers about 2.4x faster (the
figures, dated: ``benchmarks/README.md``). The CUDA backend has no Conv-BN
kernels (``CONV_BN = False``) and runs those layers one by one (docs/cuda.md).

Adding a fusion rule
--------------------
1. The kernels: add their names to ``kernels.api`` (``KERNELS``, or an optional
   group with its capability flag); define them in ``kernels/numpy_ref/`` by
   composing the unfused reference kernels (that is the definition the other
   backends are held to), then in ``numba_cpu`` (and ``numba_cuda``); compare them
   with the reference in ``tests/test_backend_parity.py`` (and ``tests/cudasim/``).
2. The step: a module of this package with a subclass of ``FusedStep`` whose
   ``forward(x, training)`` and ``backward(dout)`` read the layers' ``params``,
   write their ``grads`` (all of them, overwriting), take work arrays from
   ``self.workspace`` and return what the last layer's ``forward`` / the first
   layer's ``backward`` would (None for the input gradient when
   ``layers[0].requires_input_grad`` is off). It only wires kernels together: a
   formula (a statistic, a fold) belongs to a kernel. ``kernels`` lists what it
   runs, for ``summary``.
3. The rule: append ``FusionRule(pattern, step, applies)`` to ``FUSION_RULES``:
   ``pattern`` the layer classes in order, ``applies(layers)`` any further
   condition on the matched layers (a backend capability, say), ``step`` the
   class. At each position the rules are tried in order and the first that
   matches wins, so put a longer or more specific rule first.
4. The test: ``tests/test_plan.py`` trains a network in which every rule fires
   fused and unfused and compares outputs, gradients and weights
   (``test_every_fusion_rule_fires`` checks that each rule fired).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from scratchcnn.nn.layers import BatchNorm2D, Conv2D, MaxPool2D, ReLU
from scratchcnn.nn.plan.conv_bn_add_relu import ConvBNAddReLU
from scratchcnn.nn.plan.conv_bn_relu import ConvBNReLU
from scratchcnn.nn.plan.conv_relu_pool import ConvReLUPool
from scratchcnn.nn.plan.fused import FusedStep

__all__ = ["FusedStep", "ConvReLUPool", "ConvBNReLU", "ConvBNAddReLU", "FusionRule", "FUSION_RULES", "make_plan",
           "block_plan", "describe"]


@dataclass(frozen=True)
class FusionRule:
    """Replace each run of layers of the classes ``pattern`` (for which ``applies`` is true) by ``step``."""

    pattern: tuple[type, ...]
    step: type
    applies: Callable[[tuple], bool] = lambda layers: True


def conv_bn_applies(layers) -> bool:
    """The Conv-BN-ReLU rules' condition: a backend with ``CONV_BN_KERNELS`` (the CPU backends)."""
    return bool(getattr(layers[0].K, "CONV_BN", False))


FUSION_RULES: list[FusionRule] = [
    FusionRule((Conv2D, ReLU, MaxPool2D), ConvReLUPool),
    FusionRule((Conv2D, BatchNorm2D, ReLU, MaxPool2D), ConvBNReLU, conv_bn_applies),
    FusionRule((Conv2D, BatchNorm2D, ReLU), ConvBNReLU, conv_bn_applies),
]


def make_plan(layers, fuse: bool) -> list:
    """The steps that run ``layers``: the layers themselves, or fused steps where a rule matches.

    Layers match a rule's pattern by exact class (a subclass of ReLU may do
    something else). Returns a list of steps (``Layer`` and ``FusedStep`` objects), in order.
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


def block_plan(main, shortcut, fuse: bool) -> tuple[list, "ConvBNAddReLU | None"]:
    """The plan of a residual block: ``(steps of the main path, tail)``.

    Fused, on a backend with ``CONV_BN``, where ``main`` ends Conv2D, BatchNorm2D and
    ``shortcut`` is empty (the identity) or Conv2D, BatchNorm2D (a projection), the
    tail is one ``ConvBNAddReLU`` covering those layers, the sum and the block's
    ReLU, and the steps cover the rest of ``main``; otherwise the tail is None and
    the steps cover all of ``main`` (the block then adds and clips itself).
    """
    main, shortcut = list(main), list(shortcut)
    ends = tuple(type(layer) for layer in main[-2:]) == (Conv2D, BatchNorm2D)
    projection = tuple(type(layer) for layer in shortcut) in ((), (Conv2D, BatchNorm2D))
    if fuse and ends and projection and conv_bn_applies(main[-2:]):
        return make_plan(main[:-2], fuse), ConvBNAddReLU(*main[-2:], *shortcut)
    return make_plan(main, fuse), None


def describe(plan) -> list[tuple[str, str]]:
    """``(layers, how they run)`` for every step, as ``Sequential.summary`` prints them."""
    rows = []
    for step in plan:
        inner = getattr(step, "inner_plan", None)  # a block (Residual) that runs a plan of its own
        if inner:
            rows.append((step.name, f"{type(step).__name__}: its steps, indented below"))
            rows += [("  " + name.replace(f"{step.name}.", ""), how) for name, how in describe(inner)]
        elif step.kernels:
            kernels = ", ".join(dict.fromkeys(step.kernels))
            rows.append((" + ".join(layer.name for layer in step.layers),
                         f"fused: {type(step).__name__} ({kernels})"))
        else:
            rows.append((step.name, f"{type(step).__name__}.forward / .backward"))
    return rows
