"""``FusedStep``: the base class of a step that runs a run of layers with other kernels."""
from __future__ import annotations

from scratchcnn.nn.step import Step

__all__ = ["FusedStep"]


class FusedStep(Step):
    """A run of layers executed as one step (``scratchcnn.nn.step`` describes the protocol).

    A subclass defines ``forward``, ``backward`` and ``kernels``. It computes the
    same function as its layers one after another: it reads their ``params``,
    overwrites all their ``grads``, and leaves every formula to the kernels and the
    layers (a batch normalisation's statistics come from ``K.batchnorm_*``, input
    checks from ``Layer.check_input``); only the wiring is the step's.

    Attributes
    ----------
    layers : tuple of Layer
        The layers it runs, in order.
    kernels : tuple of str
        Names of the kernels it calls, forward then backward (for ``summary``).
    """

    def __init__(self, *layers):
        self._layers = tuple(layers)
        self._cache: dict = {}
        self._workspace: dict = {}

    @property
    def layers(self) -> tuple:
        return self._layers

    @property
    def K(self):
        """The backend of the layers (``Sequential.build`` places them all on one)."""
        return self._layers[0].K

    @property
    def name(self) -> str:
        return "+".join(layer.name for layer in self._layers)

    def bias_of(self, conv, dtype):
        """``conv.params["b"]``, or a zero vector when the convolution has no bias."""
        return conv.params["b"] if conv.bias else self.constant("zeros", conv.out_channels, 0.0, dtype)
