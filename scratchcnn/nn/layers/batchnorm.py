"""Batch normalisation over channels (NCHW) or features (N, F)."""
from __future__ import annotations

import numpy as np

from kernels.numpy_ref.norm import batchnorm_inference_affine
from scratchcnn.nn.init import NO_INIT
from scratchcnn.nn.layers.base import Layer

__all__ = ["BatchNorm2D", "BatchNorm1D"]


class _BatchNorm(Layer):
    """Shared code of BatchNorm1D and BatchNorm2D; see their docstrings."""

    _rank = 0  # input rank: 4 for (N, C, H, W), 2 for (N, F)

    def __init__(self, num_features, momentum=0.1, eps=1e-5, rng=None):
        super().__init__()
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive int, got {num_features!r}")
        if not 0.0 < float(momentum) <= 1.0 or not float(eps) > 0.0:
            raise ValueError(f"{type(self).__name__}: need 0 < momentum <= 1 and eps > 0, "
                             f"got momentum={momentum!r}, eps={eps!r}")
        self.num_features, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        if rng is not NO_INIT:  # NO_INIT: the statistics are loaded next (Sequential.from_config)
            self.reset_parameters(None)

    def param_shapes(self):
        return {"gamma": (self.num_features,), "beta": (self.num_features,)}

    def buffer_shapes(self):
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def reset_parameters(self, rng):
        c = self.num_features
        self._set_param("gamma", np.ones(c, np.float32))
        self._set_param("beta", np.zeros(c, np.float32))
        self.buffers["running_mean"] = self.K.asarray(np.zeros(c, np.float32))
        self.buffers["running_var"] = self.K.asarray(np.ones(c, np.float32))

    def get_config(self):
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    elementwise = True  # per channel (feature)

    def onnx_nodes(self, x, out, weight, helper):
        # the inference form: gamma*(x - running_mean)/sqrt(running_var + eps) + beta
        inputs = [x, weight("gamma"), weight("beta"), weight("running_mean"), weight("running_var")]
        return [helper.make_node("BatchNormalization", inputs, [out], name=self.name, epsilon=self.eps)]

    def inference_affine(self):
        """At inference this layer is ``scale * x + shift`` per channel: ``(scale, shift)``, float64 host
        arrays (C,), folded in float64 from the running statistics (``batchnorm_inference_affine``)."""
        f64 = lambda a: np.asarray(self.K.to_numpy(a), np.float64)  # noqa: E731 - fold in float64, round once
        return batchnorm_inference_affine(f64(self.params["gamma"]), f64(self.params["beta"]),
                                          f64(self.buffers["running_mean"]), f64(self.buffers["running_var"]),
                                          self.eps)

    def fold_into(self, previous):
        """``previous`` (a Conv2D or Dense, say) with this layer's inference affine map absorbed
        (``previous.with_channel_affine``), or None if it cannot absorb one.

        Jacob et al. (2018), "Quantization and Training of Neural Networks for Efficient
        Integer-Arithmetic-Only Inference", Section 3.2; PyTorch's ``fuse_conv_bn_eval``.
        """
        return previous.with_channel_affine(*self.inference_affine())

    def with_channel_affine(self, scale, shift):
        return None

    def explain_unit(self, x, out, image, channel, row, col):
        return None  # an affine map per channel: the value before and after say it all

    def flops(self, input_shape):
        return 2 * int(np.prod(input_shape))

    def forward(self, x, training=True):
        self.check_input(x, self._rank, 1, self.num_features, "num_features")
        out, x_hat, inv_std = self.K.batchnorm_forward(
            x, self.params["gamma"], self.params["beta"], self.buffers["running_mean"],
            self.buffers["running_var"], self.momentum, self.eps, training,
            out=self.workspace("out", x.shape, x.dtype), x_hat=self.workspace("x_hat", x.shape, x.dtype),
            inv_std=self.workspace("inv_std", (self.num_features,), x.dtype))
        self._cache = {"x_hat": x_hat, "inv_std": inv_std, "training": bool(training)}
        return out

    def backward(self, dout):
        """The gradient of the last forward pass's mode: through the batch statistics after a
        training-mode pass, a per-channel scale after an inference-mode one (saliency maps)."""
        cache, self._cache = self._cache, {}
        return self.K.batchnorm_backward(dout, cache["x_hat"], cache["inv_std"], self.params["gamma"],
                                         self.grads["gamma"], self.grads["beta"],
                                         out=self.workspace("dx", dout.shape, dout.dtype),
                                         training=cache["training"])


class BatchNorm2D(_BatchNorm):
    """Normalise each channel of an NCHW batch over (N, H, W), then scale and shift.

    Parameters
    ----------
    num_features : int
        Number of channels C.
    momentum : float
        Weight of the current batch in the running statistics (PyTorch's convention).
    eps : float
        Added to the variance before the square root.

    Shapes
    ------
    x : (N, C, H, W) -> out : same; ``params["gamma"]``, ``params["beta"]``,
    ``buffers["running_mean"]``, ``buffers["running_var"]`` : (C,).

    Notes
    -----
    Training: ``x_hat = (x - mean_B) / sqrt(var_B + eps)``, ``out = gamma*x_hat + beta``,
    with batch statistics; inference uses the running statistics instead.
    ``dgamma = sum(dout*x_hat)``, ``dbeta = sum(dout)``,
    ``dx = gamma/(M*sqrt(var_B + eps)) * (M*dout - dbeta - x_hat*dgamma)``, M = N*H*W
    (Ioffe & Szegedy, 2015, ICML, Algorithm 1 and Section 3); after an inference-mode
    forward, ``dx = gamma/sqrt(running_var + eps) * dout``. Every formula, and its
    numerics: ``kernels/numpy_ref/norm.py``.
    """

    _rank = 4

    def output_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm2D({self.num_features}) needs (C={self.num_features}, H, W) "
                             f"per sample, got {tuple(input_shape)}")
        return tuple(input_shape)


class BatchNorm1D(_BatchNorm):
    """Normalise each feature of an (N, F) batch over N, then scale and shift.

    As ``BatchNorm2D`` with M = N; ``x : (N, F) -> out : (N, F)``.
    """

    _rank = 2

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.num_features,):
            raise ValueError(f"BatchNorm1D({self.num_features}) needs ({self.num_features},) per sample, "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)
