"""The serving side of the web demo, without HTTP: loaded models, checked images, answers as dicts.

Thread safety: a ``Sequential`` is not safe to call from two threads at once (its
layers cache their last forward pass and write into reused buffers), so each
served model keeps a pool of ``replicas`` independent copies loaded from the same
file, and a request borrows one for the whole forward and backward pass (with one
replica this is a lock per model). benchmarks/README.md has the measurements
behind the default.
"""
from __future__ import annotations

import io
import json
import queue
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
from PIL import Image, UnidentifiedImageError

from scratchcnn.engine import explain, inference
from scratchcnn.errors import DataError
from scratchcnn.nn.layers import Conv2D, MaxPool2D
from scratchcnn.nn.losses import softmax
from scratchcnn.data.images import load_image, preprocess_image, preprocessing_options
from scratchcnn.files.loading import load_saved_model
from scratchcnn.apps.web import render

__all__ = ["ImageError", "Limits", "ServedModel", "load_served", "decode_image"]


class ImageError(Exception):
    """A request's image is unusable; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What the server accepts. ``max_bytes``: an encoded image (default 4 MiB);
    ``max_pixels``: width x height once decoded (default 25 megapixels), which stops
    decompression bombs (a few kB of PNG that decode to gigabytes) before decoding."""

    max_bytes: int = 4 * 2**20
    max_pixels: int = 25_000_000


def decode_image(data: bytes, limits: Limits, channels: int = 1) -> np.ndarray:
    """Check an uploaded image, then decode it with ``scratchcnn.data.images.load_image`` (as predict does).

    Returns what ``load_image`` returns: float32 [0, 1], (H, W) for ``channels=1``, else (H, W, 3).

    Raises
    ------
    ImageError
        400 empty; 413 more than ``max_bytes`` or ``max_pixels``; 415 not an image
        format Pillow knows; 400 a known format that does not decode (truncated, corrupt)
        or holds NaN pixels.
    """
    if not data:
        raise ImageError(400, "the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(413, f"the image is {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    try:
        # Image.open reads only the header: the size is known before any pixel is decoded. Pillow's
        # warning for a large one would go raw to the server's log: the size is checked just below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
        with probe:
            width, height = probe.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
        raise ImageError(413, f"the image is too large once decoded: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError(415, "not an image this server reads (PNG, JPEG, GIF, BMP, TIFF, WebP...)") from None
    if width * height > limits.max_pixels:
        raise ImageError(413, f"the image is {width}x{height} pixels ({width * height:,}); the limit is "
                              f"{limits.max_pixels:,} pixels")
    try:
        return load_image(data, channels=channels)
    except DataError as exc:
        if "cannot read the image" not in str(exc):  # NaN pixels: the message says what is wrong
            raise ImageError(400, str(exc).split(": ", 1)[-1]) from None
        reason = str(exc).rsplit(": ", 1)[-1]  # Pillow's own words
        raise ImageError(400, f"the image does not decode (truncated or corrupt): {reason}") from None


@dataclass
class ServedModel:
    """One model file, loaded ``replicas`` times, with what the page shows about it."""

    id: str
    path: Path
    meta: dict
    card: dict
    replicas: int = 1
    _pool: queue.Queue = field(default_factory=queue.Queue, repr=False)

    @property
    def class_names(self) -> list:
        return self.meta["class_names"]

    def add_replica(self, model) -> None:
        """Put one more copy of the model into the pool (``load_served`` does)."""
        self._pool.put(model)

    @contextmanager
    def replica(self):
        """``with entry.replica() as model``: a copy for this thread alone, waiting while all are busy."""
        model = self._pool.get()
        try:
            yield model
        finally:
            self._pool.put(model)

    def warm_up(self) -> None:
        """Run every replica once on a blank input: compiles (or loads) the kernels and allocates
        the layers' buffers before the first request, so that it is not the slow one."""
        blank = np.zeros(self.card["input_shape"], np.float32)
        models = [self._pool.get() for _ in range(self.replicas)]
        try:
            for model in models:
                _one_thread()
                inference.predict_logits(model, blank[None])  # the plan's kernels
                explain.trace_with_saliency(model, blank)  # the layers' own, for the details
        finally:
            for model in models:
                self._pool.put(model)

    def prepare(self, data: bytes, limits: Limits):
        """Encoded image bytes -> (model input (C, H, W) float32, inverted?): ``scratchcnn.data.images``,
        the preprocessing ``python -m scratchcnn.predict`` uses."""
        shape = self.card["input_shape"]
        pixels = decode_image(data, limits, channels=shape[0])
        return preprocess_image(pixels, shape, self.meta["normalization"], **preprocessing_options(self.meta))

    def predict(self, data: bytes, limits: Limits, top_k: int = 5, details: bool = False) -> dict:
        """Classify one image; with ``details``, add the input as the model sees it, every conv
        and max-pool layer's maps, and the saliency map of the top class.

        The probabilities come from the model's execution plan in inference mode
        (``scratchcnn.engine.inference.probabilities``, as ``predict`` and ``evaluate``);
        ``explain`` runs the layers one by one only for the maps and the saliency.

        Returns a JSON-able dict (see the API section of README.md); ``ImageError`` for a bad image.
        """
        x, inverted = self.prepare(data, limits)
        started = time.perf_counter()
        with self.replica() as model:
            _one_thread()
            probs = inference.probabilities(model, x[None])[0]
            order = np.argsort(-probs, kind="stable")
            if details:
                grad, _, traced = explain.trace_with_saliency(model, x, target=int(order[0]))
                maps = explain.feature_maps(model, traced=traced)
        answer = {"model": self.id, "class": self.class_names[order[0]], "index": int(order[0]),
                  "classes": [{"name": self.class_names[i], "index": int(i), "probability": float(probs[i])}
                              for i in order[:top_k]],
                  "probabilities": [float(p) for p in probs], "inverted": inverted}
        if details:
            answer.update(self._details(model, x, traced, maps, grad, int(order[0])))
        answer["compute_ms"] = (time.perf_counter() - started) * 1e3
        return answer

    def _details(self, model, x, traced, maps, grad, top: int) -> dict:
        # ``model`` is only asked for its layers' names and types, which never change: it may
        # already serve another request.
        norm = self.meta["normalization"]
        layers = []
        for i, layer in enumerate(model.layers):
            if isinstance(layer, Conv2D):
                values, kind = maps[layer.name][0], "conv"
            elif isinstance(layer, MaxPool2D):
                values, kind = traced.outputs[i][0], "pool"
            elif layer.name in maps:  # a residual block: a ResNet's maps stage by stage
                values, kind = maps[layer.name][0], "block"
            else:
                continue
            levels, layout = render.feature_grid(values)
            layers.append({"name": layer.name, "kind": kind, "shape": list(values.shape),
                           "layout": layout, "png": render.grid_png(levels)})
        heat, top_grad = render.heat_map(grad[0])
        return {"input": {"png": render.png_data_url(render.grey_image(x, norm["mean"], norm["std"])),
                          "shape": list(x.shape)},
                "layers": layers,
                "saliency": {"png": heat, "target": top,
                             "class": self.class_names[top], "max_abs_gradient": top_grad}}

    def unit(self, data: bytes, limits: Limits, layer: str, channel: int, row: int, col: int) -> dict:
        """How one unit of a conv or max-pool layer is computed (``explain.*_unit_breakdown``), as JSON.

        Raises KeyError (unknown layer) or ValueError (wrong kind, coordinate out of range).
        """
        x, _ = self.prepare(data, limits)
        with self.replica() as model:
            _one_thread()
            traced = explain.trace(model, x)
            names = [lyr.name for lyr in model.layers]
            if layer not in names:
                raise KeyError(f"no layer {layer!r}; this model has {', '.join(names)}")
            kind = model.layers[names.index(layer)]
            if isinstance(kind, MaxPool2D):
                result = explain.pool_unit_breakdown(model, traced, layer, channel, row, col)
            else:
                result = explain.conv_unit_breakdown(model, traced, layer, channel, row, col)
            result["input_layer"] = names[names.index(layer) - 1] if names.index(layer) else "input"
        return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in result.items()}


def _one_thread() -> None:
    """Run this thread's compiled CPU kernels on one thread: one image is too little work to
    split, and waking a team of threads per kernel cost more than the kernels (measured:
    benchmarks/README.md). Numba's thread count is per calling thread, so other threads keep
    theirs; backends without parallel CPU kernels are not affected."""
    numba.set_num_threads(1)


def _card(path: Path, model, meta: dict) -> dict:
    """What the page shows about a model: data set, architecture, parameters, test accuracy."""
    metrics_file = path.parent / "metrics.json"
    metrics = {}
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text())
        except (OSError, ValueError):
            metrics = {}  # a card without figures beats no demo; the model file itself was checked
    if not isinstance(metrics, dict):
        metrics = {}
    return {"dataset": meta.get("dataset"), "file": f"{path.parent.name}/{path.name}",
            "input_shape": list(model.input_shape), "parameters": model.num_params(),
            "summary": model.summary(), "preset": metrics.get("model"),
            "test_accuracy": metrics.get("test_accuracy"), "test_images": metrics.get("test_images"),
            "epochs": metrics.get("epochs_completed"), "train_images": metrics.get("train_images"),
            "class_names": list(meta["class_names"])}


def load_served(paths, backend=None, replicas: int = 1) -> dict[str, ServedModel]:
    """Load each run folder or model file ``replicas`` times; ids are the data set names
    ("mnist", "fashion"), made unique with the folder name when two share one.

    Raises ConfigError / ModelFileError (from ``scratchcnn.files.loading.load_saved_model``).
    """
    served: dict[str, ServedModel] = {}
    for given in paths:
        model, meta, path = load_saved_model(given, backend=backend)
        ident = str(meta.get("dataset") or path.parent.name)
        if ident in served:
            ident = f"{ident}-{path.parent.name}"
        entry = ServedModel(ident, path, meta, _card(path, model, meta), replicas)
        entry.add_replica(model)
        for _ in range(replicas - 1):
            entry.add_replica(load_saved_model(path, backend=backend)[0])
        served[ident] = entry
    return served
