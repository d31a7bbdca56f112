"""How a trained network sees an image: feature maps, saliency, and how one number is computed.

Everything here runs the model's own layers one at a time in inference mode
(``training=False``), so it shows the function the network computes whatever
execution plan ``Sequential`` uses for speed (a fused Conv-ReLU-MaxPool step
never materialises the ReLU output; this path does). Each result is a host copy:
layers reuse their buffers between calls, and a copy stays valid afterwards.

The model itself is not thread-safe (its layers cache their last forward pass and
reuse buffers): call these functions on one model from one thread at a time
(``scratchcnn.serve`` keeps a lock per model copy).

==========================  =======================================================
function                    what
==========================  =======================================================
``trace``                   every layer's output for an input (host copies)
``feature_maps``            each convolution's output after its ReLU, by conv name
``saliency``                d(class logit)/d(input pixels) by the layers' backward
``trace_with_saliency``     both from one forward pass
``unit_breakdown``          one output unit of any layer that explains its units (``Layer.explain_unit``)
``conv_unit_breakdown``     one conv output: patch, kernels, products, sum, bias, ReLU
``pool_unit_breakdown``     one max-pool output: its window and which input won
==========================  =======================================================

References
----------
Simonyan, Vedaldi & Zisserman (2014), "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps", ICLR workshop, Section 3.
Wang et al. (2020), "CNN Explainer: Learning Convolutional Neural Networks with
Interactive Visualization", IEEE VIS (the per-unit breakdown).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchcnn.nn.layers import Conv2D, MaxPool2D, ReLU, Residual

__all__ = ["Trace", "trace", "feature_maps", "saliency", "trace_with_saliency", "unit_breakdown",
           "conv_unit_breakdown", "pool_unit_breakdown"]


@dataclass
class Trace:
    """The result of ``trace``: one inference pass, every layer's output kept.

    Attributes
    ----------
    x : ndarray, shape (N, C, H, W), the model's dtype: the input as the model saw it
    names : list of str, the layer names (``model.layers[i].name``), in order
    outputs : list of ndarray, host copies; ``outputs[i]`` is layer ``i``'s output
        (``(N, C, H, W)`` for spatial layers, ``(N, F)`` after ``Flatten``)
    """

    x: np.ndarray
    names: list
    outputs: list

    @property
    def logits(self) -> np.ndarray:
        """The last layer's output, (N, num_classes)."""
        return self.outputs[-1]

    def index(self, name: str) -> int:
        """Position of layer ``name``; raise KeyError listing the names if there is none."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no layer named {name!r}; the model's layers are {', '.join(self.names)}") from None

    def input_of(self, name: str) -> np.ndarray:
        """What layer ``name`` received: the previous layer's output, or ``x`` for the first."""
        i = self.index(name)
        return self.x if i == 0 else self.outputs[i - 1]


def _dtype(model):
    """The dtype of the model's parameters (float32 unless it was moved with ``to(dtype=...)``)."""
    for layer in model.layers:
        for value in layer.params.values():
            return np.dtype(value.dtype)
    return np.dtype(np.float32)


def _batch(model, x) -> np.ndarray:
    """``x`` as an (N, C, H, W) host array of the model's dtype; one image (C, H, W) gets N = 1."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=_dtype(model))


def _forward(model, x: np.ndarray, keep: bool) -> tuple[list, object]:
    """Run the layers one by one in inference mode; return host copies of the outputs (if ``keep``)
    and the last output as a backend array. Each layer caches what its backward pass needs."""
    K = model.K
    out, outputs = K.asarray(x), []
    for layer in model.layers:
        out = layer.forward(out, training=False)
        if keep:
            outputs.append(np.array(K.to_numpy(out)))
    return outputs, out


def trace(model, x) -> Trace:
    """Run ``model`` on ``x`` layer by layer in inference mode, keeping every layer's output.

    Parameters
    ----------
    model : Sequential
    x : ndarray, float, shape (N, C, H, W) or (C, H, W), already preprocessed
        (standardised, as ``scratchcnn.data.images.preprocess_image`` returns)

    Returns
    -------
    Trace; its logits equal ``model.forward(x, training=False)`` (the same kernels).
    """
    x = _batch(model, x)
    outputs, _ = _forward(model, x, keep=True)
    return Trace(x, [layer.name for layer in model.layers], outputs)


def _activation_after(model, i: int) -> int:
    """Index of the ReLU that ends the run of elementwise layers (``Layer.elementwise``: they keep
    the spatial layout, so a unit's value can be followed through them) after layer ``i``, or -1."""
    for j in range(i + 1, len(model.layers)):
        if isinstance(model.layers[j], ReLU):
            return j
        if not model.layers[j].elementwise:
            return -1
    return -1


def feature_maps(model, x=None, traced: Trace | None = None) -> dict[str, np.ndarray]:
    """The output of every convolution after its ReLU, and of every residual block, keyed by name.

    For ``Conv2D - ReLU`` that is the ReLU's output; for ``Conv2D - BatchNorm2D - ReLU``
    (vgg-small) the output of the ReLU after the normalisation. A convolution that no
    ReLU follows directly maps to its own output. A ``Residual`` block maps to its
    output, ``relu(F(x) + S(x))``: a ResNet's maps stage by stage (``residual_0``, ...).

    Parameters
    ----------
    model : Sequential
    x : ndarray, shape (N, C, H, W) or (C, H, W), preprocessed; or None when ``traced`` is given
    traced : Trace, optional, a ``trace(model, x)`` to reuse

    Returns
    -------
    dict ``{"conv2d_0": (N, C_out, H_out, W_out), ...}`` in layer order, host arrays of the
    model's dtype, every value >= 0 where a ReLU follows.
    """
    traced = traced if traced is not None else trace(model, x)
    maps = {}
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Conv2D):
            j = _activation_after(model, i)
            maps[layer.name] = traced.outputs[j if j >= 0 else i]
        elif isinstance(layer, Residual):
            maps[layer.name] = traced.outputs[i]
    return maps


def saliency(model, x, target=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gradient of a class logit with respect to the input pixels (a saliency map).

    One inference-mode forward pass through the layers, then each layer's own
    hand-written ``backward`` in reverse order, starting from a one-hot gradient
    on the chosen logit. The magnitude ``|grad|`` (its maximum over channels, as
    the paper does for colour) shows which pixels would change that class's score
    most (Simonyan et al., 2014, Section 3.1). The gradient of the logit, not of
    the probability, so other classes do not enter it.

    Parameters
    ----------
    model : Sequential (left as it was: ``requires_input_grad`` is restored)
    x : ndarray, shape (N, C, H, W) or (C, H, W), preprocessed (standardised)
    target : int, sequence of N ints, or None
        The class whose logit is differentiated, per image; None: each image's top class.

    Returns
    -------
    grad : ndarray, shape (N, C, H, W), the model's dtype: d logit[n, target[n]] / d x[n]
        (with respect to the standardised input; divide by ``255 * std`` for raw grey levels)
    target : ndarray, int64, shape (N,)
    logits : ndarray, shape (N, num_classes)

    Raises
    ------
    ValueError
        If ``x`` has the wrong rank or a target is not a class index.
    """
    grad, target, traced = trace_with_saliency(model, x, target, keep=False)
    return grad, target, traced.logits


def trace_with_saliency(model, x, target=None, keep: bool = True) -> tuple[np.ndarray, np.ndarray, Trace]:
    """``trace`` and ``saliency`` from one forward pass: ``(grad, target, Trace)``.

    With ``keep=False`` the Trace holds only the logits (``outputs`` = [logits]).
    Arguments, results and errors as for ``saliency``.
    """
    x = _batch(model, x)
    K = model.K
    outputs, out = _forward(model, x, keep=keep)
    logits = np.array(K.to_numpy(out))
    n, classes = logits.shape
    target = (logits.argmax(axis=1) if target is None
              else np.broadcast_to(np.asarray(target, np.int64), (n,)).copy())
    if target.min() < 0 or target.max() >= classes:
        raise ValueError(f"target {target.tolist()} out of range: the model has {classes} classes")
    seed = np.zeros_like(logits)
    seed[np.arange(n), target] = 1
    first = model.layers[0]
    old = first.requires_input_grad
    first.requires_input_grad = True
    try:
        dout = K.asarray(seed)
        for layer in reversed(model.layers):  # inference-mode gradients (BatchNorm: a per-channel scale)
            dout = layer.backward(dout)
        grad = np.array(K.to_numpy(dout))
    finally:
        first.requires_input_grad = old
    names = [layer.name for layer in model.layers]
    return grad, target, Trace(x, names if keep else names[-1:], outputs if keep else [logits])


def _unit(traced: Trace, name: str, image: int, channel: int, row: int, col: int) -> np.ndarray:
    """Check that (image, channel, row, col) is inside layer ``name``'s output; return that output."""
    out = traced.outputs[traced.index(name)]
    if out.ndim != 4:
        raise ValueError(f"layer {name!r} has no spatial output (shape {out.shape[1:]})")
    for value, size, what in ((image, out.shape[0], "image"), (channel, out.shape[1], "channel"),
                              (row, out.shape[2], "row"), (col, out.shape[3], "col")):
        if not 0 <= value < size:
            raise ValueError(f"{name}: {what} {value} out of range [0, {size})")
    return out


def unit_breakdown(model, traced: Trace, name: str, channel: int, row: int, col: int, image: int = 0) -> dict:
    """How layer ``name`` computed its output at (channel, row, col): the layer's own ``explain_unit``,
    followed by the elementwise layers up to the ReLU after it.

    Parameters
    ----------
    model : Sequential
    traced : Trace of ``model`` (``trace(model, x)``)
    name : str, a layer's name, e.g. "conv2d_0"
    channel, row, col : int, the output unit (pixels of the layer's output map)
    image : int, which image of the batch

    Returns
    -------
    dict: ``layer``, ``channel``, ``row``, ``col``, then the layer's breakdown (``kind`` names it:
    ``Conv2D.explain_unit``, ``MaxPool2D.explain_unit``), and ``after``: a list of ``(layer name,
    class name, value)`` for the elementwise layers (BatchNorm2D, ReLU) that follow up to the ReLU,
    ending with the value the feature map shows (empty when no ReLU follows that way).

    Raises
    ------
    KeyError if there is no layer ``name``; ValueError if that layer explains no unit or a
    coordinate is out of range.
    """
    i = traced.index(name)
    layer = model.layers[i]
    out = _unit(traced, name, image, channel, row, col)
    parts = layer.explain_unit(traced.input_of(name), out, image, channel, row, col)
    if parts is None:
        raise ValueError(f"layer {name!r} is a {type(layer).__name__}, which has no unit breakdown")
    after = [(traced.names[k], type(model.layers[k]).__name__, float(traced.outputs[k][image, channel, row, col]))
             for k in range(i + 1, _activation_after(model, i) + 1)]
    return {"layer": name, "channel": channel, "row": row, "col": col, **parts, "after": after}


def conv_unit_breakdown(model, traced: Trace, name: str, channel: int, row: int, col: int,
                        image: int = 0) -> dict:
    """How convolution ``name`` computed its output at (channel, row, col), step by step.

    ``out[c, r, q] = sum over (i, u, v) of patch[i, u, v] * W[c, i, u, v] + b[c]`` with
    ``patch = x_padded[:, r*stride : r*stride + kH, q*stride : q*stride + kW]``; then the
    elementwise layers up to the ReLU (batch normalisation where the model has it).

    Parameters
    ----------
    model : Sequential
    traced : Trace of ``model`` (``trace(model, x)``)
    name : str, a Conv2D layer's name, e.g. "conv2d_0"
    channel, row, col : int, the output unit (pixels of the conv's output map)
    image : int, which image of the batch

    Returns
    -------
    dict with (host arrays in float64, so the sums are exact to print):
        ``patch`` (C_in, kH, kW): the input window (zeros where it lies in the padding);
        ``origin`` (row, col) of the window's top-left in the unpadded input (may be negative);
        ``kernels`` (C_in, kH, kW): ``W[channel]``; ``products`` = patch * kernels;
        ``channel_sums`` (C_in,): products summed per input channel; ``sum``: their total;
        ``bias``: ``b[channel]`` (0 without bias); ``output``: sum + bias;
        ``framework_output``: the layer's own output there (equal to ``output`` up to rounding);
        ``after``: list of ``(layer name, class name, value)`` for the elementwise layers
        (BatchNorm2D, ReLU) that follow, ending with the value the feature map shows.

    Raises
    ------
    KeyError if there is no layer ``name``; ValueError if it is not a Conv2D or a coordinate
    is out of range.
    """
    layer = model.layers[traced.index(name)]
    if not isinstance(layer, Conv2D):
        raise ValueError(f"layer {name!r} is a {type(layer).__name__}, not a Conv2D")
    return unit_breakdown(model, traced, name, channel, row, col, image)


def pool_unit_breakdown(model, traced: Trace, name: str, channel: int, row: int, col: int,
                        image: int = 0) -> dict:
    """Which input won max-pool ``name``'s output at (channel, row, col).

    Parameters
    ----------
    model, traced, image : as for ``conv_unit_breakdown``
    name : str, a MaxPool2D layer's name, e.g. "maxpool2d_0"
    channel, row, col : int, the output unit

    Returns
    -------
    dict with ``window`` (k, k) float64: the input values the window covers;
    ``origin`` (row, col) of its top-left in the pool's input; ``winner`` (u, v): the
    argmax inside the window (the first in row-major order on ties, as the backward pass
    routes the gradient); ``output``: the max; ``framework_output``: the layer's own output.

    Raises
    ------
    KeyError if there is no layer ``name``; ValueError if it is not a MaxPool2D or a
    coordinate is out of range.
    """
    layer = model.layers[traced.index(name)]
    if not isinstance(layer, MaxPool2D):
        raise ValueError(f"layer {name!r} is a {type(layer).__name__}, not a MaxPool2D")
    return unit_breakdown(model, traced, name, channel, row, col, image)
