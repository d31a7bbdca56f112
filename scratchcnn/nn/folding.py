"""Batch normalisation folded into the layer before it, for inference.

In inference mode a BatchNorm layer is a fixed affine map per channel,
``y = gamma * (z - running_mean) / sqrt(running_var + eps) + beta``; when ``z`` is
a convolution's (or dense layer's) output ``z = W * x + b``, the pair is one
convolution with ``W' = W * s`` (each output channel's filter scaled) and
``b' = (b - running_mean) * s + beta``, ``s = gamma / sqrt(running_var + eps)``
(Jacob et al., 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", Section 3.2; the same folding as PyTorch's
``torch.nn.utils.fusion.fuse_conv_bn_eval``). The folded network computes the same
logits up to float32 rounding, with one pass over memory less per BN layer.
"""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense
from scratchcnn.nn.model import Sequential

__all__ = ["fold_batchnorm"]


def _host(K, array):
    return np.array(K.to_numpy(array))


def _copy(layer, K):
    """A fresh layer of the same class and config with copies of the parameters and buffers."""
    new = type(layer)(**layer.get_config())
    for key, value in layer.params.items():
        new._set_param(key, _host(K, value))
    for key, value in layer.buffers.items():
        new.buffers[key] = new.K.asarray(_host(K, value))
    return new


def _folded(layer, bn, K):
    """A copy of ``layer`` (Conv2D or Dense) with ``bn`` folded into its weights and a bias."""
    new = type(layer)(**dict(layer.get_config(), bias=True))
    f64 = lambda a: _host(K, a).astype(np.float64)  # noqa: E731 - fold in float64, round once
    scale = f64(bn.params["gamma"]) / np.sqrt(f64(bn.buffers["running_var"]) + bn.eps)
    w = f64(layer.params["W"])
    b = f64(layer.params["b"]) if layer.bias else np.zeros(scale.shape)
    # Conv2D W: (C_out, C_in, kh, kw), output channel first; Dense W: (in_features, out_features), last.
    w = w * (scale.reshape(-1, 1, 1, 1) if isinstance(layer, Conv2D) else scale.reshape(1, -1))
    b = (b - f64(bn.buffers["running_mean"])) * scale + f64(bn.params["beta"])
    dtype = _host(K, layer.params["W"]).dtype
    new._set_param("W", w.astype(dtype))
    new._set_param("b", b.astype(dtype))
    return new


def fold_batchnorm(model: Sequential) -> Sequential:
    """An inference copy of ``model`` with each Conv2D-BatchNorm2D and Dense-BatchNorm1D pair folded.

    Folds once, from the current weights and running statistics; the copy shares no
    arrays or layers with ``model`` (fold again after more training). Meant for
    ``forward(x, training=False)``.

    Returns
    -------
    Sequential
        Same backend, input shape and fusion setting; each folded BN layer gone.
    """
    K, layers, i = model.K, [], 0
    source = model.layers
    while i < len(source):
        layer = source[i]
        following = source[i + 1] if i + 1 < len(source) else None
        if ((isinstance(layer, Conv2D) and isinstance(following, BatchNorm2D))
                or (isinstance(layer, Dense) and isinstance(following, BatchNorm1D))):
            layers.append(_folded(layer, following, K))
            i += 2
        else:
            layers.append(_copy(layer, K))
            i += 1
    return Sequential(layers, input_shape=model.input_shape, backend=K.name, fuse=model.fuse)
