"""The layer protocol every scratchcnn layer follows, and the registry of layer classes.

A layer owns its behaviour: besides ``forward``/``backward`` it answers the
hooks that export, folding and explanation ask of it (``HOOKS``), so adding a
layer means writing its class and nothing else: defining the class registers it
(``Layer.registry``, the classes a saved model may name).
"""
from __future__ import annotations

import inspect

import numpy as np

import kernels
from kernels import numpy_ref
from scratchcnn.nn.init import NO_INIT
from scratchcnn.nn.step import Step

__all__ = ["Layer", "HOOKS"]

# What every layer class answers (tests/test_layer_hooks.py checks each registered class does):
# a value, or an explicit "none" (None / False) where the behaviour does not apply.
HOOKS = ("elementwise", "onnx_nodes", "fold_into", "with_channel_affine", "explain_unit")


class Layer(Step):
    """Base class: a differentiable function with (optionally) trainable parameters.

    Attributes
    ----------
    params : dict[str, array]
        Trainable parameters, e.g. ``{"W": (C_out, C_in, kH, kW), "b": (C_out,)}``.
    grads : dict[str, array]
        Gradients of the loss with respect to ``params``, same keys and shapes.
        ``backward`` overwrites them (it does not accumulate), so there is no
        ``zero_grad``.
    buffers : dict[str, array]
        Non-trainable state saved with the model (BatchNorm's running statistics).
    name : str or None
        Set by ``Sequential`` ("conv2d_0", "dense_1", ...); prefixes parameter keys.
    requires_input_grad : bool
        When False, ``backward`` skips the gradient with respect to the input and
        returns None; ``Sequential`` sets it on its first layer, whose input is data.
    trainable : bool
        False for a frozen layer (``Sequential.freeze``): its parameters are left out
        of ``Sequential.parameters()``, so the optimizer never updates them.
    K : module
        The kernel backend (``kernels.numpy_ref``, ``kernels.numba_cpu``, ...)
        this layer computes with; arrays live where that backend keeps them. A
        new layer holds host (NumPy) arrays and so computes with the reference;
        ``Sequential.build`` (or ``to``) places it on another backend.

    Notes
    -----
    Arrays returned by ``forward`` and ``backward`` live in per-layer work arrays
    (``workspace``) that the next call with the same shapes reuses (no allocation
    per batch). Copy a result if you need it after the next call.

    Registration: every subclass whose name does not start with ``_`` enters
    ``Layer.registry`` (name -> class) when it is defined; ``class X(Layer,
    register=False)`` keeps a class out. Two different classes may not share a
    name (a model file names its layers by class name).

    Hooks (``HOOKS``), which every registered class answers, explicitly:

    - ``elementwise`` (bool): acts on each value (or channel) separately and keeps
      the layout, so a unit's value can be followed through it (``explain``).
    - ``onnx_nodes(x, out, weight, helper)``: its inference form as ONNX nodes.
    - ``fold_into(previous)``: one layer computing ``previous`` then this layer at
      inference (batch normalisation folds into a convolution), or None.
    - ``with_channel_affine(scale, shift)``: a copy of this layer computing
      ``scale * out + shift`` per output channel, or None if it cannot absorb one.
    - ``explain_unit(x, out, image, channel, row, col)``: how one output unit is
      computed, as a dict, or None.
    """

    K = numpy_ref  # until ``to`` places the layer: constructors make host arrays only
    registry: dict = {}  # class name -> class, filled by __init_subclass__
    elementwise: bool | None = None  # a hook: each layer class says True or False

    def __init_subclass__(cls, register: bool = True, **kwargs):
        super().__init_subclass__(**kwargs)
        if not register or cls.__name__.startswith("_"):
            return
        known = Layer.registry.get(cls.__name__)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"layer class name {cls.__name__!r} is taken by {known.__module__}.{known.__qualname__}; "
                            "a model file names layers by class, so names must be unique")
        Layer.registry[cls.__name__] = cls

    @classmethod
    def from_config(cls, config: dict, initialize: bool = True) -> "Layer":
        """``cls(**config)``; with ``initialize=False`` a layer whose constructor takes ``rng`` (one
        with arrays) gets ``NO_INIT`` and allocates nothing (its arrays are loaded next).

        Raises
        ------
        TypeError, ValueError
            For arguments the constructor rejects.
        """
        kwargs = dict(config)
        if not initialize and "rng" in inspect.signature(cls).parameters:
            kwargs["rng"] = NO_INIT
        return cls(**kwargs)

    @property
    def layers(self) -> tuple:
        """As a plan step, a layer covers itself."""
        return (self,)

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.name: str | None = None
        self.requires_input_grad = True
        self.trainable = True
        self._cache: dict = {}
        self._workspace: dict = {}

    # -- to be defined by each layer -------------------------------------------------
    def forward(self, x, training=True):
        """Compute the layer's output; cache what ``backward`` needs when ``training``."""
        raise NotImplementedError

    def backward(self, dout):
        """Given dL/d(output), fill ``self.grads`` and return dL/d(input) (None if not required)."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of one sample's output, e.g. (C, H, W) -> (C_out, H_out, W_out); no batch axis."""
        return tuple(input_shape)

    def flops(self, input_shape: tuple) -> int:
        """Floating-point operations of one sample's forward pass (a multiply-add counts 2)."""
        return 0

    def get_config(self) -> dict:
        """Constructor arguments, JSON-serialisable, so that ``type(self)(**config)`` rebuilds it."""
        return {}

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Draw fresh initial parameters (and any random seeds) from ``rng``."""

    def param_shapes(self) -> dict:
        """Shape of every parameter (``params``) that the configuration declares, without allocating."""
        return {}

    def buffer_shapes(self) -> dict:
        """Shape of every buffer (``buffers``) that the configuration declares, without allocating."""
        return {}

    def get_state(self) -> dict:
        """Non-array state that a resumed run needs (JSON-serialisable), e.g. Dropout's mask counter."""
        return {}

    def set_state(self, state: dict) -> None:
        """Restore what ``get_state`` returned."""

    # -- hooks: what export, folding and explanation ask of a layer (class docstring) --
    def onnx_nodes(self, x: str, out: str, weight, helper) -> list:
        """The ONNX node(s) computing this layer's inference form from tensor ``x`` into tensor ``out``.

        Parameters
        ----------
        x, out : str, tensor names
        weight : callable, ``weight(key) -> str``: registers ``params[key]`` or ``buffers[key]``
            as a float32 initializer and returns its tensor name
        helper : the ``onnx.helper`` module (nn imports no onnx)

        Returns
        -------
        list of onnx.NodeProto; empty for a layer that is the identity at inference (the next
        layer then reads ``x``)
        """
        raise NotImplementedError(f"{type(self).__name__} does not say how it exports to ONNX (onnx_nodes)")

    def fold_into(self, previous: "Layer"):
        """A single layer computing ``previous`` followed by this layer at inference, or None."""
        raise NotImplementedError(f"{type(self).__name__} does not say whether it folds (fold_into)")

    def with_channel_affine(self, scale: np.ndarray, shift: np.ndarray):
        """A new layer computing ``scale[c] * out[:, c] + shift[c]``, or None.

        ``scale``, ``shift`` : float64 host arrays of shape (output channels,); the
        copy is a host layer (place it with ``to``) with this layer's dtype.
        """
        raise NotImplementedError(f"{type(self).__name__} does not say whether it absorbs a per-channel "
                                  "affine map (with_channel_affine)")

    def explain_unit(self, x: np.ndarray, out: np.ndarray, image: int, channel: int, row: int, col: int):
        """How output ``out[image, channel, row, col]`` was computed from input ``x``, or None.

        ``x``, ``out``: host arrays, this layer's input and output for a batch.
        Returns a dict of host values (float64 arrays, floats) with ``kind`` naming
        the breakdown, or None for a layer without one (``scratchcnn.engine.explain``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not say how one of its units is explained "
                                  "(explain_unit)")

    # -- shared machinery ------------------------------------------------------------
    def num_params(self) -> int:
        """Number of trainable scalars."""
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    def to(self, backend, dtype=None) -> "Layer":
        """Move parameters, gradients and buffers to ``backend`` (a name or kernel module), cast to ``dtype``.

        ``Sequential.build`` calls this for every layer of a model; call it
        yourself to run a single layer on another backend or dtype
        (``Conv2D(1, 8, 3).to("numpy", np.float64)`` for a gradient check).

        Raises
        ------
        kernels.BackendUnavailable
            If ``backend`` names a backend that cannot run here.
        """
        new = kernels.get(backend) if isinstance(backend, str) else backend
        for store in (self.params, self.grads, self.buffers):
            for key, value in store.items():
                host = self.K.to_numpy(value)
                store[key] = new.asarray(host if dtype is None else host.astype(dtype))
        self.K = new
        self._workspace.clear()
        self._cache.clear()
        return self

    def _set_param(self, key: str, value: np.ndarray) -> None:
        """Install a host array as parameter ``key`` (on this layer's backend) with a zero gradient."""
        self.params[key] = self.K.asarray(value)
        self.grads[key] = self.K.zeros(value.shape, value.dtype)

    def set_array(self, key: str, value: np.ndarray) -> None:
        """Install host array ``value`` as parameter or buffer ``key`` on this layer's backend.

        ``key`` is one of ``param_shapes()`` or ``buffer_shapes()`` (how a model file's arrays
        come in: ``Sequential.load_named_arrays``, ``host_copy``). A parameter keeps its gradient
        array if it has one of that shape, else gets a zero one. A layer that keeps its arrays
        elsewhere (in sub-layers) overrides this.
        """
        if key in self.param_shapes():
            grad = self.grads.get(key)
            self._set_param(key, value)
            if grad is not None and tuple(grad.shape) == tuple(value.shape) and grad.dtype == value.dtype:
                self.grads[key] = grad  # loading weights leaves the last gradients as they were
        elif key in self.buffer_shapes():
            self.buffers[key] = self.K.asarray(value)
        else:
            raise KeyError(f"{self.name or type(self).__name__} has no parameter or buffer {key!r}")

    def host_copy(self) -> "Layer":
        """A new host layer of the same class and config holding copies of the parameters and buffers."""
        new = type(self).from_config(self.get_config(), initialize=False)
        for key, value in {**self.params, **self.buffers}.items():
            new.set_array(key, np.array(self.K.to_numpy(value)))
        if self.get_state():
            new.set_state(self.get_state())
        return new

    def check_input(self, x, ndim: int, axis: int, expected: int, what: str) -> None:
        """Raise ValueError naming the layer if ``x`` has the wrong rank or ``x.shape[axis]``.

        Parameters
        ----------
        x : array, the input about to be computed on
        ndim : int, the rank expected; axis : int, the axis checked
        expected : int, its size; what : str, its name in the message ("in_channels")
        """
        if len(x.shape) != ndim or x.shape[axis] != expected:
            raise ValueError(
                f"{self.name or type(self).__name__}: expected input of rank {ndim} with "
                f"{what} = {expected} at axis {axis}, got shape {tuple(x.shape)}")

    def __call__(self, x, training=True):
        return self.forward(x, training)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
