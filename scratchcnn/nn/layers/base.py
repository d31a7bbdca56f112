"""The layer protocol every scratchcnn layer follows."""
from __future__ import annotations

import numpy as np

import kernels
from kernels import numpy_ref

__all__ = ["Layer"]


class Layer:
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
    Arrays returned by ``forward`` and ``backward`` live in per-layer buffers
    that the next call with the same shapes reuses (no allocation per batch).
    Copy a result if you need it after the next call.
    """

    K = numpy_ref  # until ``to`` places the layer: constructors make host arrays only

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

    def _buffer(self, key: str, shape, dtype):
        """A reusable work array: allocated once, reallocated only when shape or dtype change."""
        shape = tuple(int(s) for s in shape)
        buf = self._workspace.get(key)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != np.dtype(dtype):
            buf = self.K.empty(shape, dtype)
            self._workspace[key] = buf
        return buf

    def _check_input(self, x, ndim: int, axis: int, expected: int, what: str) -> None:
        """Raise ValueError naming the layer if ``x`` has the wrong rank or ``x.shape[axis]``."""
        if len(x.shape) != ndim or x.shape[axis] != expected:
            raise ValueError(
                f"{self.name or type(self).__name__}: expected input of rank {ndim} with "
                f"{what} = {expected} at axis {axis}, got shape {tuple(x.shape)}")

    def __call__(self, x, training=True):
        return self.forward(x, training)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
