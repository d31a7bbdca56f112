"""``ConvBNAddReLU``: a residual block's last Conv2D -> BatchNorm2D, its shortcut, the sum and the ReLU."""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.plan.fused import FusedStep

__all__ = ["ConvBNAddReLU"]


class ConvBNAddReLU(FusedStep):
    """The end of a residual block as one step: ``relu(BN(conv(y)) + S(x))``, the same function as its layers.

    ``y`` is the main path's value before its last Conv2D-BatchNorm2D, ``x`` the
    block's input, ``S`` the identity or a 1x1 Conv2D-BatchNorm2D projection (He et
    al., 2016, eq. 1-2, option B). A two-input step, run by ``Residual`` (not by
    ``Sequential``): ``forward(y, x, training)`` and ``backward(dout, shortcut_grad)``.

    Training forward: each convolution sums its output's channels in its epilogue
    (``conv2d_affine_forward``), ``batchnorm_batch_affine`` turns the sums into
    BN's scale and shift, and ``bn_add_relu_forward`` applies both BNs, adds and
    clips in one pass (BN needs the whole batch's statistics before it can
    normalise, so this pass cannot move into the convolution). Inference: the
    projection's BN folds into its convolution, and the main convolution's
    epilogue applies its folded BN, adds the shortcut and clips
    (``conv2d_affine_forward(..., residual=)``): the sum and ReLU cost no pass.
    Backward: ``bn_relu_backward`` masks the gradient with the block's ReLU and
    sums it for the main BN; that masked gradient ``g`` is the gradient of the
    sum, so it is also the shortcut's: the identity passes it on as it is, a
    projection takes ``bn_backward_sums`` and ``conv2d_affine_backward``.

    Attributes
    ----------
    layers : (Conv2D, BatchNorm2D) or (Conv2D, BatchNorm2D, Conv2D, BatchNorm2D)
        The main path's last two layers, then the shortcut's.
    """

    kernels = ("conv2d_affine_forward", "batchnorm_batch_affine", "bn_add_relu_forward", "bn_relu_backward",
               "bn_backward_sums", "batchnorm_backward_affine", "conv2d_affine_backward")

    def __init__(self, conv, bn, *shortcut):
        super().__init__(conv, bn, *shortcut)
        self.projection = tuple(shortcut) or None
        if self.projection is None:
            self.kernels = tuple(k for k in type(self).kernels if k != "bn_backward_sums")

    def _conv_stats(self, x, conv, bn, key):
        """A training-mode Conv2D -> BatchNorm2D up to BN's affine map: ``z`` and (scale, shift, mean, inv_std)."""
        K, dtype, n = self.K, x.dtype, x.shape[0]
        c, h, w = conv.output_shape(x.shape[1:])
        stats = self.workspace(f"{key}stats", (2, c), np.float64)
        z, _ = K.conv2d_affine_forward(x, conv.params["W"], self.constant("ones", c, 1.0, dtype),
                                       self.bias_of(conv, dtype), False, conv.stride, conv.padding,
                                       out=self.workspace(f"{key}z", (n, c, h, w), dtype), stats=stats)
        return z, K.batchnorm_batch_affine(stats, n * h * w, bn.params["gamma"], bn.params["beta"],
                                           bn.buffers["running_mean"], bn.buffers["running_var"], bn.momentum,
                                           bn.eps)

    def _folded(self, conv, bn, dtype):
        """Inference: BN's running statistics (and the conv's bias) as one scale and shift per channel."""
        return self.K.batchnorm_inference_affine(bn.params["gamma"], bn.params["beta"], bn.buffers["running_mean"],
                                                 bn.buffers["running_var"], bn.eps, self.bias_of(conv, dtype))

    def forward(self, y, x, training=True):
        """``relu(BN(conv(y)) + S(x))``: y (N, C', H', W') the main path so far, x (N, C, H, W) the block's input."""
        conv, bn = self.layers[0], self.layers[1]
        K, dtype = self.K, y.dtype
        conv.check_input(y, 4, 1, conv.in_channels, "in_channels")
        n = y.shape[0]
        shape = (n,) + conv.output_shape(y.shape[1:])
        if not training:
            self._cache = {}
            s = x
            if self.projection is not None:
                p_conv, p_bn = self.projection
                p_scale, p_shift = self._folded(p_conv, p_bn, dtype)
                s, _ = K.conv2d_affine_forward(x, p_conv.params["W"], p_scale, p_shift, False, p_conv.stride,
                                               p_conv.padding, out=self.workspace("s", shape, dtype))
            if tuple(s.shape) != shape:
                raise ValueError(f"{self.name}: main path output {shape} differs from the shortcut's "
                                 f"{tuple(s.shape)}")
            scale, shift = self._folded(conv, bn, dtype)
            return K.conv2d_affine_forward(y, conv.params["W"], scale, shift, True, conv.stride, conv.padding,
                                           out=self.workspace("out", shape, dtype), residual=s)[0]
        z, (scale, shift, mean, inv_std) = self._conv_stats(y, conv, bn, "")
        cache = {"y": y, "x": x, "z": z, "mean": mean, "inv_std": inv_std}
        if self.projection is None:
            r, r_scale, r_shift = x, self.constant("ones", shape[1], 1.0, dtype), self.constant("zeros", shape[1],
                                                                                                0.0, dtype)
        else:
            r, (r_scale, r_shift, cache["p_mean"], cache["p_inv_std"]) = self._conv_stats(x, *self.projection, "p_")
            cache["p_z"] = r
        if tuple(r.shape) != shape:
            raise ValueError(f"{self.name}: main path output {shape} differs from the shortcut's {tuple(r.shape)}")
        out = K.bn_add_relu_forward(z, scale, shift, r, r_scale, r_shift, out=self.workspace("out", shape, dtype))
        cache["out"] = out
        self._cache = cache
        return out

    def backward(self, dout, shortcut_grad=True):
        """Gradients of every covered layer from ``dout`` (the block output's gradient).

        Returns ``(dy, dx_shortcut)``: the gradient of ``y`` (main path so far) and the
        shortcut's contribution to the block input's gradient (None without ``shortcut_grad``).
        """
        conv, bn, K = self.layers[0], self.layers[1], self.K
        cache, self._cache = self._cache, {}
        if not cache:
            raise RuntimeError(f"{self.name}: backward needs a training-mode forward pass first (BatchNorm's "
                               "gradient goes through the batch statistics; inference folds them away)")
        z, c = cache["z"], conv.out_channels
        sums = self.workspace("sums", (2, c), np.float64)
        g = self.workspace("g", z.shape, z.dtype)
        K.bn_relu_backward(dout, cache["out"], z, cache["mean"], cache["inv_std"], g=g, sums=sums)
        dy = self.conv_bn_backward(conv, bn, g, z, sums, cache["mean"], cache["inv_std"], cache["y"],
                                   conv.requires_input_grad)
        if self.projection is None:
            return dy, (g if shortcut_grad else None)
        p_conv, p_bn = self.projection
        p_sums = K.bn_backward_sums(g, cache["p_z"], cache["p_mean"], cache["p_inv_std"],
                                    sums=self.workspace("p_sums", (2, c), np.float64))
        dx = self.conv_bn_backward(p_conv, p_bn, g, cache["p_z"], p_sums, cache["p_mean"], cache["p_inv_std"],
                                   cache["x"], shortcut_grad, "p_dx")
        return dy, dx
