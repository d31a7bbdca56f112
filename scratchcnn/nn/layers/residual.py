"""The residual block: a main path of layers plus a shortcut, summed, then ReLU."""
from __future__ import annotations

import inspect
from collections.abc import MutableMapping

import numpy as np

import kernels
from scratchcnn.nn.init import NO_INIT
from scratchcnn.nn.layers.base import Layer
from scratchcnn.nn.layers.batchnorm import BatchNorm2D
from scratchcnn.nn.layers.conv2d import Conv2D
from scratchcnn.nn.layers.relu import ReLU

__all__ = ["Residual", "basic_block"]


class _ChildArrays(MutableMapping):
    """A block's ``params``, ``grads`` or ``buffers``: its sub-layers' dicts seen as one, keys prefixed.

    ``block.params["main.conv2d_0.W"]`` is ``conv2d_0.params["W"]``; reading, writing
    and iterating go through to the sub-layer, so ``Sequential`` (saving, loading,
    the optimizer's ``parameters()``) treats a block's arrays like any layer's.
    """

    def __init__(self, block: "Residual", store: str):
        self._block, self._store = block, store

    def _route(self, key):
        for prefix, child in self._block.children():
            if isinstance(key, str) and key.startswith(prefix + "."):
                return getattr(child, self._store), key[len(prefix) + 1:]
        raise KeyError(key)

    def __getitem__(self, key):
        store, sub = self._route(key)
        return store[sub]

    def __setitem__(self, key, value):
        store, sub = self._route(key)
        store[sub] = value

    def __delitem__(self, key):
        store, sub = self._route(key)
        del store[sub]

    def __iter__(self):
        for prefix, child in self._block.children():
            for key in getattr(child, self._store):
                yield f"{prefix}.{key}"

    def __len__(self):
        return sum(len(getattr(child, self._store)) for _, child in self._block.children())


def _layer_from_entry(entry, where: str, rng):
    """A Layer given as itself or as ``{"class": name, "config": {...}}`` (a saved model's JSON)."""
    if isinstance(entry, Layer):
        return entry
    registry = Layer.registry
    cls_name = entry.get("class") if isinstance(entry, dict) else None
    if cls_name not in registry:
        raise ValueError(f"Residual {where}: unknown class {cls_name!r}; expected one of {sorted(registry)}")
    cls, kwargs = registry[cls_name], dict(entry.get("config", {}))
    try:
        if rng is NO_INIT:
            return cls.from_config(kwargs, initialize=False)
        if rng is not None and "rng" in inspect.signature(cls).parameters:
            kwargs["rng"] = rng
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"Residual {where} ({cls_name}): bad config {entry.get('config')!r}: {exc}") from None


class Residual(Layer):
    """``out = relu(F(x) + S(x))``: a main path ``F`` of layers and a shortcut ``S``, summed, then ReLU.

    A ``Sequential`` holds a block like any layer (He, Zhang, Ren & Sun, 2016, "Deep
    Residual Learning for Image Recognition", CVPR, eq. 1-2 and Fig. 2; the shape
    of d2l.ai's ``Residual``, section 8.6).

    Parameters
    ----------
    main : list of Layer (or of ``{"class", "config"}`` dicts, as ``get_config`` writes)
        ``F``, e.g. Conv3x3-BN-ReLU-Conv3x3-BN (``basic_block``).
    shortcut : list of Layer (or dicts), optional
        ``S``: empty or None for the identity; a 1x1 Conv2D (stride 2) and a
        BatchNorm2D where ``F`` changes the shape (He et al.'s option B).
    rng : numpy.random.Generator or NO_INIT, optional
        Passed to the layers given as dicts (``NO_INIT``: allocate nothing, the
        weights are loaded next). Layers given as objects keep their own.

    Shapes
    ------
    x : (N, C, H, W) -> out : the shape of ``F(x)``, which must equal that of ``S(x)``.

    Notes
    -----
    Sub-layers are named inside the block, ``main.conv2d_0``, ``main.batchnorm2d_0``,
    ..., ``shortcut.conv2d_0``; their parameters appear as ``params["main.conv2d_0.W"]``,
    so the model's keys read ``residual_0.main.conv2d_0.W``.
    Backward: ``d = dout * (out > 0)`` (the ReLU), then the sum passes ``d`` to both
    paths unchanged, and the input's gradient is the sum of theirs,
    ``dx = dF/dx^T d + dS/dx^T d`` (``d`` itself for the identity): the identity
    term is what lets the gradient reach early layers undiminished (He et al.,
    2016, Section 3.1; He et al., 2016b, "Identity Mappings in Deep Residual
    Networks", eq. 5).
    """

    def __init__(self, main, shortcut=None, rng=None):
        self._children: list = []
        super().__init__()
        main = [] if isinstance(main, (Layer, dict)) else list(main)
        if not main:
            raise ValueError("Residual: main must be a non-empty list of layers")
        self.main = [_layer_from_entry(e, f"main[{i}]", rng) for i, e in enumerate(main)]
        self.shortcut = [_layer_from_entry(e, f"shortcut[{i}]", rng) for i, e in enumerate(shortcut or [])]
        for path, prefix in ((self.main, "main"), (self.shortcut, "shortcut")):
            counts: dict = {}
            for layer in path:
                kind = type(layer).__name__.lower()
                self._children.append((f"{prefix}.{kind}_{counts.get(kind, 0)}", layer))
                counts[kind] = counts.get(kind, 0) + 1
        self.name = None  # names the sub-layers
        self.steps = list(self.main)  # how the main path runs: its layers, or fused steps (``plan``)
        self.tail = None  # fused: the last Conv-BN, shortcut, sum and ReLU as one step (``plan``)
        self.params, self.grads, self.buffers = (_ChildArrays(self, s) for s in ("params", "grads", "buffers"))

    # -- the block as a container ----------------------------------------------------
    def children(self) -> list:
        """``(prefix, layer)`` of every sub-layer, main path first, e.g. ``("main.conv2d_0", conv)``."""
        return list(self._children)

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        # Sequential names the block; its sub-layers take "<block>.<prefix>" for messages and summaries.
        self._name = value
        for prefix, child in self._children:
            child.name = prefix if value is None else f"{value}.{prefix}"

    def plan(self, fuse: bool) -> list:
        """Make the block's execution plan (``scratchcnn.nn.plan.block_plan``); ``Sequential.build`` calls it.

        Fused, on backends with the Conv-BN kernels, a Conv2D-BatchNorm2D-ReLU run of the
        main path is one ``ConvBNReLU`` step, and the main path's last Conv2D-BatchNorm2D,
        the shortcut, the sum and the ReLU are one ``ConvBNAddReLU`` step (``tail``); the
        function computed is the same. Returns the steps, the tail last if there is one.
        """
        from scratchcnn.nn.plan import block_plan  # the plan module imports the layers

        self.steps, self.tail = block_plan(self.main, self.shortcut, fuse)
        return self.inner_plan

    @property
    def inner_plan(self) -> list:
        """The steps the block runs: the main path's (``steps``), then ``tail`` if fused; for ``summary``."""
        return self.steps + ([self.tail] if self.tail is not None else [])

    def to(self, backend, dtype=None) -> "Residual":
        new = kernels.get(backend) if isinstance(backend, str) else backend
        for _, child in self._children:
            child.to(new, dtype)
        self.K = new
        self._workspace.clear()
        self._cache.clear()
        return self

    def _child(self, key):
        """``(sub-layer, its own key)`` for a block key such as ``"main.conv2d_0.W"``."""
        for prefix, child in self._children:
            if key.startswith(prefix + "."):
                return child, key[len(prefix) + 1:]
        raise KeyError(f"{self.name or 'Residual'} has no parameter or buffer {key!r}")

    def _set_param(self, key, value):
        child, sub = self._child(key)
        child._set_param(sub, value)

    def set_array(self, key, value):
        child, sub = self._child(key)
        child.set_array(sub, value)

    # -- hooks (Layer.HOOKS) ---------------------------------------------------------
    elementwise = False  # it convolves: a unit's value cannot be followed through it

    def onnx_nodes(self, x, out, weight, helper):
        """Each path's layers' own nodes (their weights named ``<block>.main.conv2d_0.W``, ...), then
        ``Add`` and ``Relu`` (ONNX operators of the same names)."""
        nodes, ends = [], {"main": x, "shortcut": x}
        for prefix, layer in self._children:
            path = prefix.split(".")[0]
            made = layer.onnx_nodes(ends[path], f"{out}/{prefix}", lambda k, p=prefix: weight(f"{p}.{k}"), helper)
            if made:  # a layer that is the identity at inference (Dropout) makes no node
                ends[path] = f"{out}/{prefix}"
            nodes += made
        total = f"{out}/sum"
        return nodes + [helper.make_node("Add", [ends["main"], ends["shortcut"]], [total], name=f"{self.name}.add"),
                        helper.make_node("Relu", [total], [out], name=f"{self.name}.relu")]

    def fold_into(self, previous):
        return None  # a block does not fold into the layer before it

    def with_channel_affine(self, scale, shift):
        return None  # the ReLU after the sum does not commute with a per-channel affine map

    def explain_unit(self, x, out, image, channel, row, col):
        return None  # a sum of two paths of layers: their maps tell more than one unit

    def reset_parameters(self, rng):
        for _, child in self._children:
            child.reset_parameters(rng)

    def param_shapes(self):
        return {f"{p}.{k}": s for p, child in self._children for k, s in child.param_shapes().items()}

    def buffer_shapes(self):
        return {f"{p}.{k}": s for p, child in self._children for k, s in child.buffer_shapes().items()}

    def get_state(self):
        return {p: child.get_state() for p, child in self._children if child.get_state()}

    def set_state(self, state):
        by_prefix = dict(self._children)
        for prefix, child_state in state.items():
            if prefix not in by_prefix:
                raise ValueError(f"{self.name or 'Residual'}: state for unknown sub-layer {prefix!r}")
            by_prefix[prefix].set_state(child_state)

    def get_config(self):
        entry = lambda layer: {"class": type(layer).__name__, "config": layer.get_config()}  # noqa: E731
        return {"main": [entry(layer) for layer in self.main], "shortcut": [entry(layer) for layer in self.shortcut]}

    # -- shapes ----------------------------------------------------------------------
    def _path_shapes(self, path, input_shape):
        shape, shapes = tuple(input_shape), []
        for layer in path:
            shape = layer.output_shape(shape)
            shapes.append(shape)
        return shapes

    def output_shape(self, input_shape):
        main = self._path_shapes(self.main, input_shape)[-1]
        short = self._path_shapes(self.shortcut, input_shape)[-1] if self.shortcut else tuple(input_shape)
        if main != short:
            raise ValueError(f"{self.name or 'Residual'}: the main path gives {main} per sample but the shortcut "
                             f"gives {short}; add a 1x1 Conv2D (stride) and BatchNorm2D shortcut")
        return main

    def flops(self, input_shape):
        total = 0
        for path in (self.main, self.shortcut):
            shape = tuple(input_shape)
            for layer in path:
                total += layer.flops(shape)
                shape = layer.output_shape(shape)
        return total + int(np.prod(self.output_shape(input_shape)))  # the sum (the ReLU compares only)

    def sublayer_rows(self, input_shape) -> list:
        """``(name, class, output shape, params, FLOPs)`` of every sub-layer, for ``Sequential.summary``."""
        rows = []
        for path in (self.main, self.shortcut):
            shape = tuple(input_shape)
            for layer in path:
                out = layer.output_shape(shape)
                rows.append((layer.name, type(layer).__name__, out, layer.num_params(), layer.flops(shape)))
                shape = out
        return rows

    # -- computation -----------------------------------------------------------------
    def forward(self, x, training=True):
        y = x
        for step in self.steps:
            y = step.forward(y, training)
        if self.tail is not None:
            return self.tail.forward(y, x, training)
        s = x
        for layer in self.shortcut:
            s = layer.forward(s, training)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(f"{self.name or 'Residual'}: main path output {tuple(y.shape)} differs from the "
                             f"shortcut's {tuple(s.shape)}")
        out = self.K.add_relu_forward(y, s, out=self.workspace("out", y.shape, y.dtype))
        self._cache = {"out": out}
        return out

    def backward(self, dout):
        K, want_dx = self.K, self.requires_input_grad
        if self.tail is not None:
            dy, dx_short = self.tail.backward(dout, shortcut_grad=want_dx)
            dx_main = self._path_backward(self.steps, dy, want_dx) if self.steps else dy
            return K.add(dx_main, dx_short, out=self.workspace("dx", dx_main.shape, dx_main.dtype)) if want_dx \
                else None
        out = self._cache.pop("out")
        d = K.relu_backward(dout, out, out=self.workspace("d", dout.shape, dout.dtype))
        dx_main = self._path_backward(self.steps, d, want_dx)
        if not self.shortcut:
            return K.add(dx_main, d, out=self.workspace("dx", dx_main.shape, d.dtype)) if want_dx else None
        dx_short = self._path_backward(self.shortcut, d, want_dx)
        return K.add(dx_main, dx_short, out=self.workspace("dx", dx_main.shape, d.dtype)) if want_dx else None

    @staticmethod
    def _path_backward(path, dout, want_dx):
        """Backpropagate ``dout`` through ``path`` (layers or plan steps) in reverse; its first layer skips
        dx unless ``want_dx``."""
        first = getattr(path[0], "layers", (path[0],))[0]
        old, first.requires_input_grad = first.requires_input_grad, want_dx
        try:
            for layer in reversed(path):
                dout = layer.backward(dout)
        finally:
            first.requires_input_grad = old
        return dout


def basic_block(in_channels, out_channels, stride=1, shortcut=True):
    """He et al.'s basic block (2016, Fig. 2 left, Section 4.2) as layers.

    Main path: Conv3x3(stride)-BN-ReLU-Conv3x3-BN, convolutions without bias (BN
    cancels it) and with He initialisation. Returns a ``Residual`` whose shortcut is
    the identity, or, where the shape changes (``stride != 1`` or a new channel
    count), a 1x1 Conv2D with that stride and a BatchNorm2D (option B). With
    ``shortcut=False`` returns the plain layers instead, main path then ReLU (the
    "plain" network of He et al.'s Figure 6).
    """
    main = [Conv2D(in_channels, out_channels, 3, stride=stride, padding=1, init="he", bias=False),
            BatchNorm2D(out_channels),
            ReLU(),
            Conv2D(out_channels, out_channels, 3, padding=1, init="he", bias=False),
            BatchNorm2D(out_channels)]
    if not shortcut:
        return main + [ReLU()]
    projection = []
    if stride != 1 or in_channels != out_channels:
        projection = [Conv2D(in_channels, out_channels, 1, stride=stride, init="he", bias=False),
                      BatchNorm2D(out_channels)]
    return Residual(main, projection)
