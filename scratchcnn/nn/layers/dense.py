"""Fully connected (dense, linear) layer."""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.init import NO_INIT, initial_weights
from scratchcnn.nn.layers.base import Layer

__all__ = ["Dense"]


class Dense(Layer):
    """Affine map ``out = x @ W + b``.

    Parameters
    ----------
    in_features, out_features : int
    init : {"glorot", "he"}
        Weight initialisation (``scratchcnn.nn.init``); Glorot uniform is Keras' default.
    bias : bool
        Learn a bias (default); turn it off before batch normalisation.
    rng : numpy.random.Generator, optional
        Source of the initial weights; ``scratchcnn.nn.init.NO_INIT`` allocates none
        (the weights are loaded next, as ``Sequential.from_config`` does for a file).

    Shapes
    ------
    x : (N, in_features) -> out : (N, out_features); ``params["W"]`` : (in_features,
    out_features), ``params["b"]`` : (out_features,).

    Notes
    -----
    ``dW = x.T @ dout``, ``db = sum_n dout``, ``dx = dout @ W.T``
    (Goodfellow, Bengio & Courville, 2016, Deep Learning, Section 6.5.4, Algorithm 6.4).
    """

    def __init__(self, in_features, out_features, init="glorot", bias=True, rng=None):
        super().__init__()
        for value, what in ((in_features, "in_features"), (out_features, "out_features")):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Dense: {what} must be a positive int, got {value!r}")
        self.in_features, self.out_features, self.init = int(in_features), int(out_features), init
        self.bias = bool(bias)
        if rng is not NO_INIT:
            self.reset_parameters(rng or np.random.default_rng())

    def param_shapes(self):
        shapes = {"W": (self.in_features, self.out_features)}
        if self.bias:
            shapes["b"] = (self.out_features,)
        return shapes

    def reset_parameters(self, rng):
        shape = (self.in_features, self.out_features)
        self._set_param("W", initial_weights(self.init, shape, self.in_features, self.out_features, rng))
        if self.bias:
            self._set_param("b", np.zeros(self.out_features, np.float32))

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"Dense({self.in_features}, {self.out_features}) cannot take input of "
                             f"shape {tuple(input_shape)} per sample; expected ({self.in_features},)")
        return (self.out_features,)

    def flops(self, input_shape):
        return 2 * self.in_features * self.out_features

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "init": self.init,
                "bias": self.bias}

    elementwise = False

    def onnx_nodes(self, x, out, weight, helper):
        # Gemm(A=x, B=W, C=b): W is (in, out), so transB=0
        inputs = [x, weight("W")] + ([weight("b")] if self.bias else [])
        return [helper.make_node("Gemm", inputs, [out], name=self.name)]

    def fold_into(self, previous):
        return None

    def with_channel_affine(self, scale, shift):
        """``W' = W * scale`` (each output feature's column), ``b' = b * scale + shift``, in float64,
        rounded once to this layer's dtype."""
        dtype = self.params["W"].dtype
        w = np.asarray(self.K.to_numpy(self.params["W"]), np.float64) * scale.reshape(1, -1)
        b = np.asarray(self.K.to_numpy(self.params["b"]), np.float64) if self.bias else np.zeros(scale.shape)
        new = type(self).from_config(dict(self.get_config(), bias=True), initialize=False)
        new._set_param("W", w.astype(dtype))
        new._set_param("b", (b * scale + shift).astype(dtype))
        return new

    def explain_unit(self, x, out, image, channel, row, col):
        return None  # no spatial units

    def forward(self, x, training=True):
        K = self.K
        self.check_input(x, 2, 1, self.in_features, "in_features")
        out = K.gemm(x, self.params["W"], out=self.workspace("out", (x.shape[0], self.out_features), x.dtype))
        if self.bias:
            K.bias_add(out, self.params["b"])
        self._cache = {"x": x}
        return out

    def backward(self, dout):
        K = self.K
        x = self._cache.pop("x")
        K.gemm(x, dout, trans_a=True, out=self.grads["W"])
        if self.bias:
            K.bias_grad(dout, out=self.grads["b"])
        if not self.requires_input_grad:
            return None
        return K.gemm(dout, self.params["W"], trans_b=True, out=self.workspace("dx", x.shape, dout.dtype))
