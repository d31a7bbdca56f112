"""Batch normalisation folded into the layer before it, for inference.

In inference mode a BatchNorm layer is a fixed affine map per channel,
``y = scale * z + shift`` (``kernels/numpy_ref/norm.py``,
``batchnorm_inference_affine``); when ``z`` is a convolution's (or dense
layer's) output ``z = W * x + b``, the pair is one convolution with
``W' = W * scale`` (each output channel's filter scaled) and
``b' = b * scale + shift`` (Jacob et al., 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference", Section 3.2;
the same folding as PyTorch's ``torch.nn.utils.fusion.fuse_conv_bn_eval``). The
folded network computes the same logits up to float32 rounding, with one pass
over memory less per BN layer.

The layers say how: ``layer.fold_into(previous)`` returns the folded layer or
None (``BatchNorm2D``/``BatchNorm1D`` ask ``previous.with_channel_affine``), so
this module knows no layer class.
"""
from __future__ import annotations

from scratchcnn.nn.model import Sequential

__all__ = ["fold_batchnorm"]


def fold_batchnorm(model: Sequential) -> Sequential:
    """An inference copy of ``model`` with each layer that folds into its predecessor folded
    (Conv2D-BatchNorm2D and Dense-BatchNorm1D pairs).

    Folds once, from the current weights and running statistics; the copy shares no
    arrays or layers with ``model`` (fold again after more training). Meant for
    ``forward(x, training=False)``.

    Returns
    -------
    Sequential
        Same backend, input shape and fusion setting; each folded layer gone.
    """
    layers = []
    for layer in model.layers:
        folded = layer.fold_into(layers[-1]) if layers else None
        if folded is None:
            layers.append(layer.host_copy())
        else:
            layers[-1] = folded
    return Sequential(layers, input_shape=model.input_shape, backend=model.K.name, fuse=model.fuse)
