"""Transfer learning: start a model from another run's weights, and choose which layers to keep fixed.

``init_from`` copies every layer whose name and array shapes match from a saved
model into a new one (the rest keep their fresh initialisation); the model's
``Sequential.freeze`` then keeps the first layers fixed. Fine-tuning all layers
from such a start, or training only the later ones on frozen features, are the
two classic ways to reuse a network trained on a larger data set (Yosinski et al.,
2014, "How transferable are features in deep neural networks?", NeurIPS).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scratchcnn.errors import ConfigError
from scratchcnn.files.serialization import MODEL_FORMAT, check_finite, read_archive

__all__ = ["parse_layer_choice", "select_layers", "InitReport", "init_from", "describe_difference"]

_PARAM = "param/"  # archive key prefix of parameters and buffers (scratchcnn.files.serialization)


def parse_layer_choice(text: str):
    """A CLI value naming layers: ``"6"`` -> 6 (the first six layers), ``"conv2d_0,conv2d_1"`` -> the names.

    Raises
    ------
    ConfigError
        For an empty value or a negative number.
    """
    text = text.strip()
    if text.lstrip("-").isdigit():
        if int(text) < 0:
            raise ConfigError(f"expected a number of layers >= 0 or layer names, got {text}")
        return int(text)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"expected a number of layers or comma-separated layer names, got {text!r}")
    return names


def select_layers(model, choice) -> list[str]:
    """Names of the layers that ``choice`` (from ``parse_layer_choice``) picks, in model order.

    Raises
    ------
    ConfigError
        For an N larger than the model's number of layers, or an unknown name.
    """
    names = [layer.name for layer in model.layers]
    if isinstance(choice, int):
        if choice > len(names):
            raise ConfigError(f"{choice} layers asked for, but the model has {len(names)}: {', '.join(names)}")
        return names[:choice]
    unknown = [name for name in choice if name not in names]
    if unknown:
        raise ConfigError(f"unknown layer {unknown[0]!r}; the model's layers are {', '.join(names)}")
    return [name for name in names if name in choice]


@dataclass
class InitReport:
    """What ``init_from`` did: layers loaded, and layers skipped with the reason."""

    source: str
    loaded: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (layer name, reason)
    input_shape: tuple = ()  # (C, H, W) of the images the saved model takes, as its file says

    def summary(self) -> str:
        """One line for the log."""
        line = f"initialised {', '.join(self.loaded)} from {self.source}"
        if self.skipped:
            line += "; kept fresh: " + ", ".join(f"{name} ({why})" for name, why in self.skipped)
        return line


def describe_difference(source_shape, target_shape) -> str:
    """What differs between the images two models take, in words ("" when nothing does):
    ``the --init-from model takes grey 28x28 images, this one colour 32x32 images``."""
    if not source_shape or tuple(source_shape) == tuple(target_shape):
        return ""

    def words(shape):
        kind = {1: "grey", 3: "colour"}.get(int(shape[0]), f"{shape[0]}-channel")
        return f"{kind} {shape[1]}x{shape[2]}"

    return f"the --init-from model takes {words(source_shape)} images, this one {words(target_shape)} images"


def init_from(model, path, layers=None) -> InitReport:
    """Copy into ``model`` every layer of the saved model ``path`` whose name and shapes match.

    A layer is loaded whole or not at all: all its parameters and buffers (BatchNorm's
    running statistics too) must be in the file with the same shape and dtype.

    Parameters
    ----------
    model : Sequential, built
    path : path of a model file (``model.npz``) written by ``scratchcnn.files.serialization.save_model``
    layers : list of str, optional
        Only these layers are considered (default: every layer with arrays).

    Returns
    -------
    InitReport (with the saved model's input shape, for messages about what differs)

    Raises
    ------
    ModelFileError
        If the file cannot be read or holds NaN/infinite values.
    ConfigError
        If no layer matched.
    """
    meta, arrays = read_archive(path, MODEL_FORMAT)
    source = {key[len(_PARAM):]: value for key, value in arrays.items() if key.startswith(_PARAM)}
    check_finite(path, source)
    architecture = meta.get("architecture") if isinstance(meta.get("architecture"), dict) else {}
    shape = architecture.get("input_shape")
    report = InitReport(str(path), input_shape=tuple(shape) if isinstance(shape, list) else ())
    for layer in model.layers:
        stores = [store for store in (layer.params, layer.buffers) if store]
        if not stores or (layers is not None and layer.name not in layers):
            continue
        reason = None
        for store in stores:
            for key, value in store.items():
                got = source.get(f"{layer.name}.{key}")
                if got is None:
                    reason = f"no {key} in the file"
                elif got.shape != tuple(value.shape) or got.dtype != value.dtype:
                    reason = f"{key} is {got.shape} {got.dtype} there, {tuple(value.shape)} {value.dtype} here"
                if reason:
                    break
            if reason:
                break
        if reason:
            report.skipped.append((layer.name, reason))
            continue
        for store in stores:
            for key in store:
                store[key] = layer.K.asarray(np.array(source[f"{layer.name}.{key}"]))
        report.loaded.append(layer.name)
    if not report.loaded:
        raise ConfigError(f"--init-from {path}: no layer matches this model "
                          f"({'; '.join(f'{n}: {w}' for n, w in report.skipped) or 'no layer with weights chosen'})")
    return report
