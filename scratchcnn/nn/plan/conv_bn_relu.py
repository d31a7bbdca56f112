"""``ConvBNReLU``: Conv2D -> BatchNorm2D -> ReLU (-> MaxPool2D) as one step."""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.plan.fused import FusedStep

__all__ = ["ConvBNReLU"]


class ConvBNReLU(FusedStep):
    """Conv2D -> BatchNorm2D -> ReLU (-> MaxPool2D) as one step: the same function, the same parameters.

    Unfused, each such block makes seven passes over its largest array (im2col's
    columns, the GEMM's channel-major output, its NCHW copy, BN's statistics,
    normalisation, ReLU, pooling) and as many back. Fused:

    Training forward: ``conv2d_affine_forward`` convolves one image at a time
    straight into NCHW and sums each channel's values and squares on the way
    out, so the batch statistics cost no extra pass; ``batchnorm_batch_affine``
    turns the sums into the statistics (updating the running ones) and BN into
    one scale and shift per channel; ``bn_relu(_pool)_forward`` applies them with
    the ReLU (and the pooling) in one pass. Backward: ``bn_relu(_pool)_backward``
    takes the gradient through the ReLU and pooling and sums it (``dbeta``) and
    its product with ``x_hat`` (``dgamma``); ``batchnorm_backward_affine`` makes
    BN's backward a per-channel linear map of that gradient and the
    convolution's output, which ``conv2d_affine_backward`` applies image by image
    as it computes the weight and input gradients. Inference folds the running
    statistics into the convolution's epilogue (``batchnorm_inference_affine``):
    Conv-BN-ReLU is one kernel. Every BN formula and its numerics:
    ``kernels/numpy_ref/norm.py``. The backends with these kernels say ``CONV_BN``.
    """

    kernels = ("conv2d_affine_forward", "bn_relu_forward", "bn_relu_pool_forward", "bn_relu_backward",
               "bn_relu_pool_backward", "conv2d_affine_backward")

    def __init__(self, *layers):
        super().__init__(*layers)
        self.pool = layers[3] if len(layers) == 4 else None
        self.kernels = tuple(k for k in type(self).kernels if ("pool" in k) == (self.pool is not None)
                             or k.startswith("conv2d"))

    def forward(self, x, training=True):
        conv, bn = self.layers[0], self.layers[1]
        K, pool, dtype = self.K, self.pool, x.dtype
        conv.check_input(x, 4, 1, conv.in_channels, "in_channels")
        n = x.shape[0]
        c, h, w = conv.output_shape(x.shape[1:])
        gamma, beta = bn.params["gamma"], bn.params["beta"]
        running_mean, running_var = bn.buffers["running_mean"], bn.buffers["running_var"]
        bias = self.bias_of(conv, dtype)
        if training:
            stats = self.workspace("stats", (2, c), np.float64)
            z, _ = K.conv2d_affine_forward(x, conv.params["W"], self.constant("ones", c, 1.0, dtype), bias, False,
                                           conv.stride, conv.padding, out=self.workspace("z", (n, c, h, w), dtype),
                                           stats=stats)
            scale, shift, mean, inv_std = K.batchnorm_batch_affine(stats, n * h * w, gamma, beta, running_mean,
                                                                   running_var, bn.momentum, bn.eps)
            if pool is None:
                out, argmax = K.bn_relu_forward(z, scale, shift, out=self.workspace("out", z.shape, dtype)), None
            else:
                shape = (n,) + pool.output_shape((c, h, w))
                out, argmax = K.bn_relu_pool_forward(z, scale, shift, pool.kernel_size, pool.stride,
                                                     out=self.workspace("out", shape, dtype),
                                                     argmax=self.workspace("argmax", shape, np.int8))
            self._cache = {"x": x, "z": z, "out": out, "argmax": argmax, "mean": mean, "inv_std": inv_std}
            return out
        # Inference: the running statistics fold into the convolution's epilogue (with the ReLU when
        # no pooling follows), scale*conv + beta + (bias - running_mean)*scale.
        scale, shift = K.batchnorm_inference_affine(gamma, beta, running_mean, running_var, bn.eps, bias)
        z, _ = K.conv2d_affine_forward(x, conv.params["W"], scale, shift, pool is None, conv.stride, conv.padding,
                                       out=self.workspace("z", (n, c, h, w), dtype))
        self._cache = {}
        if pool is None:
            return z
        shape = (n,) + pool.output_shape((c, h, w))
        ones, zeros = self.constant("ones", c, 1.0, dtype), self.constant("zeros", c, 0.0, dtype)
        return K.bn_relu_pool_forward(z, ones, zeros, pool.kernel_size, pool.stride,
                                      out=self.workspace("out", shape, dtype),
                                      argmax=self.workspace("argmax", shape, np.int8))[0]

    def backward(self, dout):
        conv, bn, pool, K = self.layers[0], self.layers[1], self.pool, self.K
        cache, self._cache = self._cache, {}
        if not cache:
            raise RuntimeError(f"{self.name}: backward needs a training-mode forward pass first (BatchNorm's "
                               "gradient goes through the batch statistics; inference folds them away)")
        x, z, out = cache["x"], cache["z"], cache["out"]
        dtype, c = z.dtype, conv.out_channels
        mean, inv_std = cache["mean"], cache["inv_std"]
        sums = self.workspace("sums", (2, c), np.float64)
        g = self.workspace("g", z.shape, dtype)
        if pool is None:
            K.bn_relu_backward(dout, out, z, mean, inv_std, g=g, sums=sums)
        else:
            K.bn_relu_pool_backward(dout, cache["argmax"], out, z, mean, inv_std, pool.kernel_size, pool.stride,
                                    g=g, sums=sums)
        return self.conv_bn_backward(conv, bn, g, z, sums, mean, inv_std, x, conv.requires_input_grad)
