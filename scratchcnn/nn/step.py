"""The step protocol: what an execution plan runs, a layer or a fused run of layers.

``Sequential.forward`` calls ``step.forward`` on each step of its plan
(``scratchcnn.nn.plan.make_plan``) and ``backward`` calls ``step.backward`` in
reverse. A ``Layer`` is a step covering itself; a fused step
(``scratchcnn.nn.plan.FusedStep``) covers a run of layers and computes the
same function with other kernels. Both share this interface:

==================  ===========================================================
member              what
==================  ===========================================================
``forward``         ``(x, training) -> out``, caching what ``backward`` needs
``backward``        ``dout -> dx`` (None when the first layer needs no input
                    gradient), overwriting the covered layers' ``grads``
``layers``          the layers the step covers, in order (``(self,)`` for a layer)
``K``               the kernel backend it computes with
``name``            for messages and ``summary``
``kernels``         the kernels a fused step calls (empty for a layer, which
                    runs its own ``forward``/``backward``)
``workspace``       a reusable work array, allocated once per key, shape, dtype
==================  ===========================================================
"""
from __future__ import annotations

import numpy as np

__all__ = ["Step"]


class Step:
    """Base class of everything a plan runs; see the module docstring for the protocol."""

    kernels: tuple[str, ...] = ()

    @property
    def layers(self) -> tuple:
        """The layers this step covers, in order; their ``params``/``grads`` are the step's."""
        raise NotImplementedError

    def forward(self, x, training=True):
        """Compute the step's output; cache what ``backward`` needs when ``training``."""
        raise NotImplementedError

    def backward(self, dout):
        """Given dL/d(output), fill the covered layers' ``grads`` and return dL/d(input) (or None)."""
        raise NotImplementedError

    def workspace(self, key: str, shape, dtype):
        """A reusable work array of this step on its backend, by name.

        Allocated on the first call (``K.empty``, contents undefined) and again
        only when ``shape`` or ``dtype`` change, so a training step allocates
        nothing once shapes settle. The array is the step's until the next call
        with the same key: results returned from it are overwritten by the next
        forward or backward pass.

        Parameters
        ----------
        key : str, the array's name within this step
        shape : tuple of int
        dtype : numpy dtype

        Returns
        -------
        backend array of ``shape`` and ``dtype``
        """
        shape = tuple(int(s) for s in shape)
        buf = self._workspace.get(key)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != np.dtype(dtype):
            buf = self._workspace[key] = self.K.empty(shape, dtype)
        return buf

    def constant(self, key: str, size: int, value: float, dtype):
        """A (size,) vector filled with ``value`` on the step's backend, made once per key, size and dtype."""
        vec = self._workspace.get(key)
        if vec is None or vec.dtype != np.dtype(dtype) or tuple(vec.shape) != (size,):
            vec = self._workspace[key] = self.K.asarray(np.full(size, value, dtype))
        return vec
