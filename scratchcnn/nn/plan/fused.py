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

    def conv_bn_backward(self, conv, bn, g, z, sums, mean, inv_std, x, input_grad, key="dx"):
        """Conv2D -> BatchNorm2D's gradients from ``g`` at BN's output and BN's two ``sums``.

        ``sums`` (float64 (2, C)) is ``[sum(g), sum(g * x_hat)]``, BN's ``dbeta`` and ``dgamma``
        (``K.bn_relu_backward``, ``K.bn_backward_sums``); ``z`` (N, C, H', W') the convolution's
        output, ``mean``/``inv_std`` (C,) its batch statistics, ``x`` (N, C_in, H, W) its input.
        Writes the layers' ``grads`` (BN's backward as a per-channel linear map,
        ``K.batchnorm_backward_affine``, then ``K.conv2d_affine_backward``) and returns ``dx``
        in the workspace array ``key`` (None without ``input_grad``).
        """
        K, c = self.K, conv.out_channels
        bn.grads["beta"][...] = sums[0]
        bn.grads["gamma"][...] = sums[1]
        g_scale, z_scale, shift, dz_sum = K.batchnorm_backward_affine(sums, z.size // c, bn.params["gamma"],
                                                                      mean, inv_std)
        if conv.bias:
            conv.grads["b"][...] = dz_sum
        _, dx = K.conv2d_affine_backward(g, z, g_scale, z_scale, shift, x, conv.params["W"], conv.stride,
                                         conv.padding, input_grad, dw=conv.grads["W"],
                                         dx=self.workspace(key, x.shape, x.dtype) if input_grad else None)
        return dx

    def bias_of(self, conv, dtype):
        """``conv.params["b"]``, or a zero vector when the convolution has no bias."""
        return conv.params["b"] if conv.bias else self.constant("zeros", conv.out_channels, 0.0, dtype)
