"""Sequential: a stack of layers run forward and backpropagated in reverse."""
from __future__ import annotations

import math

import numpy as np

import kernels
from kernels.compile_log import CompileLog
from scratchcnn.errors import ConfigError
from scratchcnn.nn.layers import LAYER_CLASSES, Layer
from scratchcnn.nn.losses import SoftmaxCrossEntropy, softmax
from scratchcnn.nn.plan import describe, make_plan

__all__ = ["Sequential", "TrainingAPI", "provide_training"]


class TrainingAPI:
    """The training engine's functions behind ``Sequential.fit``/``evaluate``/``predict``.

    The network does not import the engine (imports run kernels <- nn <- engine <- files
    <- apps); the engine provides these when the package is imported
    (``scratchcnn/__init__.py`` calls ``provide_training``), so the Keras-style methods
    work from any import of scratchcnn.

    Attributes
    ----------
    fit : ``fit(model, x, y, **options) -> history dict`` (``scratchcnn.engine.training.fit``)
    loss_and_accuracy : ``(model, x, y, batch_size) -> (loss, accuracy)``
    predict_logits : ``(model, x, batch_size) -> (N, num_classes) float32 host logits``
    """

    def __init__(self, fit, loss_and_accuracy, predict_logits):
        self.fit, self.loss_and_accuracy, self.predict_logits = fit, loss_and_accuracy, predict_logits


_training: TrainingAPI | None = None


def provide_training(api: TrainingAPI) -> None:
    """Install the engine's functions behind the Keras-style methods (called once, by the package)."""
    global _training
    _training = api


def _training_api() -> TrainingAPI:
    if _training is None:
        raise ConfigError("fit/evaluate/predict need the training engine: import scratchcnn (the package "
                          "provides it) or call scratchcnn.nn.model.provide_training")
    return _training


class Sequential:
    """Layers applied one after another, with Keras-style ``build``/``compile``/``fit``/``evaluate``/``predict``.

    Parameters
    ----------
    layers : list of Layer
    input_shape : tuple, optional
        Shape of one sample, e.g. ``(1, 28, 28)``. Given here (or ``backend``), the
        model is built at once, as in Keras; otherwise call ``build`` yourself, or
        the first ``forward``/``fit`` builds it for the shape of its input.
    seed : int, optional
        Re-initialise every layer from ``numpy.random.default_rng(seed)``, in order,
        so that the same seed gives the same initial weights on every backend.
    backend : str, optional
        Kernel backend ("numpy", "cpu", "cuda") for the build; see ``build``.
    fuse : bool, optional
        Run each run of layers that a fusion rule matches (Conv2D-ReLU-MaxPool2D)
        as one fused step: the same function, fewer passes over memory
        (``scratchcnn.nn.plan``). ``False`` runs every layer's own ``forward`` and
        ``backward``. Default: the backend's ``FUSE_BY_DEFAULT`` (on for the
        compiled backends, off for "numpy" so the reference runs layer by layer).

    Examples
    --------
    >>> from scratchcnn.nn.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
    >>> model = Sequential([Conv2D(1, 8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(8*13*13, 10)],
    ...                    input_shape=(1, 28, 28), seed=0, backend="numpy")
    >>> model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    """

    def __init__(self, layers, input_shape=None, seed=None, backend=None, fuse=None):
        self.layers: list[Layer] = list(layers)
        if not self.layers or not all(isinstance(layer, Layer) for layer in self.layers):
            raise ValueError("Sequential needs a non-empty list of Layer objects")
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        counts: dict[str, int] = {}
        for layer in self.layers:
            kind = type(layer).__name__.lower()
            layer.name = f"{kind}_{counts.get(kind, 0)}"
            counts[kind] = counts.get(kind, 0) + 1
        self.fuse = fuse
        self.K = None  # the backend, once built
        self._plan: list | None = None
        self.optimizer = None
        self.loss = None
        if seed is not None:
            self.initialize(seed)
        self.requires_input_grad = False
        if input_shape is not None or backend is not None:
            self.build(self.input_shape, backend=backend)

    # -- construction ---------------------------------------------------------------
    @property
    def requires_input_grad(self) -> bool:
        """Whether ``backward`` returns dL/d(input); off by default, as the input is data."""
        return self.layers[0].requires_input_grad

    @requires_input_grad.setter
    def requires_input_grad(self, value: bool) -> None:
        self.layers[0].requires_input_grad = bool(value)

    @property
    def built(self) -> bool:
        """Whether ``build`` has chosen the backend and made the plan."""
        return self._plan is not None

    def initialize(self, seed: int) -> "Sequential":
        """Draw every layer's initial parameters, in order, from ``default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.reset_parameters(rng)
        return self

    def build(self, input_shape=None, backend=None, dtype=np.float32) -> "Sequential":
        """Choose the backend, place every array on it, and make the execution plan (as Keras' ``build``).

        The one place where a model's backend is resolved: ``backend`` if given,
        else ``$SCRATCHCNN_BACKEND``, else the fastest available (``kernels.get``).
        An explicit ``backend`` always wins over the environment variable.

        Parameters
        ----------
        input_shape : tuple, optional
            Shape of one sample, e.g. ``(1, 28, 28)``; checked against the layers.
            Default: the shape given before, if any.
        backend : str or kernel module, optional
            "numpy", "cpu" or "cuda" (or a module of ``kernels``, as profilers pass).
        dtype : numpy dtype or None
            Every parameter, gradient, buffer and optimizer moment is cast to it
            (float32 for training, float64 for gradient checks); None keeps each
            array's own dtype.

        Returns
        -------
        self

        Raises
        ------
        kernels.BackendUnavailable
            If the chosen backend cannot run here (the message says why).
        ValueError
            If the layers cannot take ``input_shape`` one after another.
        """
        K = kernels.get(backend) if backend is None or isinstance(backend, str) else backend
        if input_shape is not None:
            self.input_shape = tuple(int(s) for s in input_shape)
        if self.input_shape is not None:
            self.output_shapes()  # the layers chain, or ValueError naming the one that does not
        for layer in self.layers:
            layer.to(K, dtype)
        if self.optimizer is not None:
            self.optimizer.to(K, dtype)
        if self.loss is not None:
            self.loss.to(K)
        self.K = K
        self._fused = K.FUSE_BY_DEFAULT if self.fuse is None else bool(self.fuse)
        self._plan = make_plan(self.layers, self._fused)
        for layer in self.layers:
            if hasattr(layer, "plan"):  # a block (Residual) plans its own layers the same way
                layer.plan(self._fused)
        return self

    def to(self, backend=None, dtype=None) -> "Sequential":
        """Build again on ``backend``, casting to ``dtype`` (None: keep each array's dtype); returns self."""
        return self.build(self.input_shape, backend=backend, dtype=dtype)

    def ensure_built(self, input_shape=None) -> "Sequential":
        """Build with the default backend now if nobody did (Keras builds on first use too); returns self."""
        if not self.built:
            self.build(input_shape)
        return self

    def warm_up(self, batch_size: int = 64, eval_batch_size: int = 256, log=print) -> float:
        """Compile the plan's kernels for the batches training will run, before anything is timed.

        On a backend that compiles its kernels on first use (``K.COMPILES``), a
        twin of this model (the same layers, plan, backend and dtype, with its own
        weights, optimizer and loss) runs one training step on ``batch_size`` zero
        images and one inference pass on ``eval_batch_size``, so that Numba
        compiles, or loads from its disk cache, every kernel that training,
        evaluation and prediction call. This model, its optimizer and its random
        streams are left untouched, so a run is the same with or without it.
        When a kernel has to be compiled, ``log`` gets one line as compiling starts.

        Returns
        -------
        seconds : float
            Wall-clock seconds spent compiling; 0.0 when every kernel came from the
            disk cache or the backend compiles nothing.
        """
        self.ensure_built()
        K = self.K
        if not K.COMPILES or self.input_shape is None:
            return 0.0
        dtype = next((param.dtype for _, param, _ in self.parameters()), np.dtype(np.float32))
        try:
            twin = Sequential([type(layer)(**layer.get_config()) for layer in self.layers], fuse=self.fuse)
        except (TypeError, ValueError):
            return 0.0  # a layer that cannot be rebuilt from its config: its kernels compile when first run
        if self.optimizer is not None:
            twin.compile(type(self.optimizer)(**self.optimizer.get_config()), type(self.loss)())
        twin.build(self.input_shape, backend=K, dtype=dtype)
        loss = twin.loss if twin.loss is not None else SoftmaxCrossEntropy().to(K)

        def announce():
            log(f"compiling the kernels of the {K.name} backend for this model "
                "(first run only; later runs load them from the disk cache)")

        with CompileLog(on_first=announce) as compiled:
            stats = K.zeros((1, 2), np.float64)
            if twin.optimizer is not None:
                twin.train_step(K.zeros((batch_size,) + self.input_shape, dtype),
                                K.zeros((batch_size,), np.int64), stats[0])
            logits = twin.forward(K.zeros((eval_batch_size,) + self.input_shape, dtype), training=False)
            loss.forward(logits, K.zeros((eval_batch_size,), np.int64), stats=stats[0])
            K.to_numpy(stats)  # waits for queued kernels
        return compiled.seconds

    def compile(self, optimizer, loss) -> "Sequential":
        """Attach the optimizer and loss used by ``fit``; once built, both compute on this model's backend."""
        if optimizer.state:
            raise ValueError("compile: the optimizer already holds state for other parameters")
        self.optimizer, self.loss = optimizer, loss
        if self.built:
            optimizer.to(self.K)
            loss.to(self.K)
        return self

    # -- computation ----------------------------------------------------------------
    def forward(self, x, training=True):
        """Run every layer; x : (N, *input_shape) backend array -> logits (N, num_classes)."""
        self.ensure_built(tuple(x.shape[1:]))
        for step in self._plan:
            x = step.forward(x, training)
        return x

    __call__ = forward

    def backward(self, dout):
        """Backpropagate dL/d(logits) through the layers in reverse, filling each layer's grads.

        Backpropagation stops at the first layer with trainable parameters, which
        skips its input gradient: nothing below it has anything to learn (the first
        layer's input is data; frozen layers keep their parameters). So freezing the
        first layers saves their whole backward pass. With ``requires_input_grad``
        set it goes on to the input instead.

        Returns dL/d(input) when ``requires_input_grad`` is set, else None.
        """
        if self.requires_input_grad:
            for step in reversed(self._plan):
                dout = step.backward(dout)
            return dout
        first = self._first_trainable()
        if first is None:  # everything frozen: no gradient is needed
            return None
        start = next(i for i, step in enumerate(self._plan) if first in step.layers)
        old, first.requires_input_grad = first.requires_input_grad, False
        try:
            for step in reversed(self._plan[start:]):
                dout = step.backward(dout)
        finally:
            first.requires_input_grad = old
        return None

    def _first_trainable(self):
        """The first layer that has parameters and is not frozen, or None."""
        return next((layer for layer in self.layers if layer.param_shapes() and layer.trainable), None)

    # -- transfer learning ------------------------------------------------------------
    def freeze(self, layers) -> "Sequential":
        """Keep the parameters of some layers fixed (transfer learning); the others train.

        Frozen layers still run forward in training mode (Dropout drops, BatchNorm
        normalises with batch statistics and updates its running ones, as PyTorch
        does with ``requires_grad=False``), but their parameters are left out of
        ``parameters()``, so the optimizer neither updates them nor keeps moments
        for them, and ``backward`` stops at the first trainable layer.

        Parameters
        ----------
        layers : int or iterable of str
            ``N``: the first N layers (in ``summary`` order); or layer names such as
            ``["conv2d_0", "conv2d_1"]``. ``0`` or ``[]`` unfreezes every layer.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For an N outside [0, number of layers], an unknown layer name, or a choice
            that leaves no parameter to train.
        """
        names = [layer.name for layer in self.layers]
        if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
            if not 0 <= layers <= len(names):
                raise ValueError(f"freeze: N = {layers}, expected 0..{len(names)} (the model has {len(names)} layers)")
            chosen = set(names[:int(layers)])
        else:
            chosen = set(layers)
            unknown = sorted(chosen - set(names))
            if unknown:
                raise ValueError(f"freeze: unknown layer {unknown[0]!r}; the layers are {', '.join(names)}")
        # Declared shapes, not arrays: a model being loaded (initialize=False) has no arrays yet.
        if not any(layer.param_shapes() and layer.name not in chosen for layer in self.layers):
            raise ValueError("freeze: that leaves no layer with parameters to train")
        for layer in self.layers:
            layer.trainable = layer.name not in chosen
        return self

    @property
    def frozen(self) -> list[str]:
        """Names of the frozen layers, in order."""
        return [layer.name for layer in self.layers if not layer.trainable]

    @property
    def plan(self) -> list:
        """The steps ``forward`` runs, in order: the layers, with fused steps where fusion is on
        (``scratchcnn.nn.plan``); builds the model with the default backend if nobody did."""
        self.ensure_built()
        return list(self._plan)

    def train_step(self, x, y, stats=None):
        """One step of mini-batch training: forward, loss, backward, optimizer update (as Keras' ``train_step``).

        Parameters
        ----------
        x : (N, *input_shape) backend array, float32
        y : (N,) backend array, int64
        stats : backend float64 array (2,), optional
            Where the loss writes ``[sum of the N losses, number correct]``.

        Returns
        -------
        stats

        Raises
        ------
        ConfigError
            If the model is not compiled.
        """
        if self.optimizer is None or self.loss is None:
            raise ConfigError("the model is not compiled: call model.compile(optimizer, loss) first")
        self.ensure_built(tuple(x.shape[1:]))
        stats = self.loss.forward(self.forward(x, training=True), y, stats=stats)
        self.backward(self.loss.backward())
        self.optimizer.step(self.parameters())
        return stats

    def parameters(self):
        """Yield ``(key, param, grad)`` for every trainable array, keys like ``"conv2d_0.W"``
        (frozen layers' parameters are left out)."""
        for layer in self.layers:
            if not layer.trainable:
                continue
            for key, param in layer.params.items():
                yield f"{layer.name}.{key}", param, layer.grads[key]

    def named_arrays(self) -> dict[str, np.ndarray]:
        """A copy of every parameter and buffer as a host array, keyed ``"<layer>.<name>"`` (for saving).

        Copies, so that a snapshot (early stopping's best weights) does not change
        as training goes on.
        """
        out = {}
        for layer in self.layers:
            for store in (layer.params, layer.buffers):
                for key, value in store.items():
                    out[f"{layer.name}.{key}"] = np.array(layer.K.to_numpy(value))
        return out

    def declared_shapes(self) -> dict[str, tuple]:
        """The shape of every parameter and buffer the layers' configurations declare, keyed as
        ``named_arrays``; nothing is allocated (a model file's arrays are checked against it)."""
        return {f"{layer.name}.{key}": tuple(shape) for layer in self.layers
                for shapes in (layer.param_shapes(), layer.buffer_shapes()) for key, shape in shapes.items()}

    def load_named_arrays(self, arrays: dict) -> None:
        """Copy host arrays into the parameters and buffers of the same names (shapes must match).

        Also fills a model built with ``from_config(..., initialize=False)``, whose
        layers hold no arrays yet (float32 expected then).

        Raises
        ------
        ValueError
            If a name is missing, unexpected, or has a different shape or dtype.
        """
        expected = self.declared_shapes()
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        if missing or extra:
            raise ValueError(f"arrays do not match the architecture: missing {missing}, unexpected {extra}")
        for layer in self.layers:
            for store, shapes in ((layer.params, layer.param_shapes()), (layer.buffers, layer.buffer_shapes())):
                for key, shape in shapes.items():
                    got, dtype = arrays[f"{layer.name}.{key}"], store[key].dtype if key in store else np.float32
                    if got.shape != shape or got.dtype != dtype:
                        raise ValueError(f"array {layer.name + '.' + key!r}: expected shape {shape} {np.dtype(dtype)}, "
                                         f"found {got.shape} {got.dtype}")
        for layer in self.layers:
            for key in (*layer.param_shapes(), *layer.buffer_shapes()):
                layer.set_array(key, np.array(arrays[f"{layer.name}.{key}"]))

    def layer_states(self) -> dict:
        """``{layer name: layer.get_state()}`` for the layers that have state (Dropout)."""
        return {layer.name: layer.get_state() for layer in self.layers if layer.get_state()}

    def load_layer_states(self, states: dict) -> None:
        """Inverse of ``layer_states``; raise ValueError for an unknown layer name."""
        by_name = {layer.name: layer for layer in self.layers}
        for name, state in states.items():
            if name not in by_name:
                raise ValueError(f"state for unknown layer {name!r}")
            by_name[name].set_state(state)

    def num_params(self) -> int:
        """Number of trainable scalars."""
        return sum(layer.num_params() for layer in self.layers)

    # -- description ----------------------------------------------------------------
    def get_config(self) -> dict:
        """The architecture as JSON-able data: ``{"input_shape": [...], "layers": [{"class", "config"}]}``."""
        config = {"input_shape": list(self.input_shape) if self.input_shape else None,
                  "layers": [{"class": type(layer).__name__, "config": layer.get_config()}
                             for layer in self.layers]}
        if self.frozen:
            config["frozen"] = self.frozen
        return config

    @classmethod
    def from_config(cls, config: dict, backend=None, initialize: bool = True) -> "Sequential":
        """Rebuild a model from ``get_config()`` output.

        With ``initialize=False`` the layers allocate no parameters (``NO_INIT``):
        fill them with ``load_named_arrays``, after checking ``declared_shapes``
        (loading a file never draws random weights it then throws away).

        Raises
        ------
        ValueError
            If a layer class is not one of scratchcnn's, or its arguments are invalid.
        """
        layers = []
        for i, entry in enumerate(config.get("layers", [])):
            cls_name = entry.get("class") if isinstance(entry, dict) else None
            if cls_name not in LAYER_CLASSES:
                raise ValueError(f"layer {i}: unknown class {cls_name!r}; expected one of {sorted(LAYER_CLASSES)}")
            try:
                layers.append(LAYER_CLASSES[cls_name].from_config(dict(entry.get("config", {})), initialize))
            except TypeError as exc:
                raise ValueError(f"layer {i} ({cls_name}): bad config {entry.get('config')!r}: {exc}") from None
        model = cls(layers, input_shape=config.get("input_shape"), backend=backend)
        frozen = config.get("frozen", [])
        if not isinstance(frozen, list) or not all(isinstance(name, str) for name in frozen):
            raise ValueError(f"'frozen' must list layer names, found {frozen!r}")
        return model.freeze(frozen) if frozen else model

    def output_shapes(self, input_shape=None) -> list[tuple]:
        """Per-sample output shape of every layer, checking that the layers chain.

        Raises
        ------
        ValueError
            If no input shape is known or a layer cannot take its predecessor's output.
        """
        shape = tuple(input_shape or self.input_shape or ())
        if not shape:
            raise ValueError("input_shape is unknown: pass it to Sequential(...) or to this method")
        shapes = []
        for layer in self.layers:
            shape = layer.output_shape(shape)
            shapes.append(shape)
        return shapes

    def flops(self, input_shape=None) -> int:
        """Forward-pass floating-point operations per image (multiply-add = 2)."""
        shape = tuple(input_shape or self.input_shape)
        total = 0
        for layer, out_shape in zip(self.layers, self.output_shapes(shape)):
            total += layer.flops(shape)
            shape = out_shape
        return total

    def summary(self, input_shape=None) -> str:
        """A table of layers (output shape, parameters, forward FLOPs per image, totals), then the plan.

        The plan is what ``forward`` and ``backward`` will run: one line per step,
        naming the layers it runs and how (their own methods, or a fused step and
        its kernels); see ``scratchcnn.nn.plan``.
        """
        shape = tuple(input_shape or self.input_shape or ())
        out_shapes = self.output_shapes(shape)
        rows = [("Layer (type)", "Output shape", "Params", "FLOPs/image")]
        for layer, out_shape in zip(self.layers, out_shapes):
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + out_shape),
                         f"{layer.num_params():,}", f"{layer.flops(shape):,}"))
            # A block (Residual) lists its sub-layers under it, indented; its own row holds their totals.
            for name, kind, sub_shape, params, flops in getattr(layer, "sublayer_rows", lambda s: [])(shape):
                rows.append((f"  {name} ({kind})", str((None,) + sub_shape), f"{params:,}", f"{flops:,}"))
            shape = out_shape
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "-" * (sum(widths) + 6)
        fmt = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}"
        text = [fmt(rows[0]), line] + [fmt(r) for r in rows[1:]] + [line]
        text.append(f"Total params: {self.num_params():,}")
        text.append(f"Forward FLOPs per image: {self.flops(self.input_shape or input_shape):,} "
                    f"(training step ~3x)")
        backend = self.K.name if self.built else "not built yet"
        text.append(f"Input shape: {(None,) + tuple(self.input_shape or input_shape)}; backend: {backend}")
        if self.built:
            steps = describe(self._plan)
            text.append(f"Execution plan ({len(steps)} steps; fusion {'on' if self._fused else 'off'}):")
            width = max(len(name) for name, _ in steps)
            text += [f"  {i:>2}  {name:<{width}}  {how}" for i, (name, how) in enumerate(steps, 1)]
        return "\n".join(text)

    # -- Keras-style training API (the engine's, provided through TrainingAPI) -----------------
    def fit(self, x, y, **kwargs):
        """Train; see ``scratchcnn.engine.training.fit`` for the arguments. Returns the history dict."""
        return _training_api().fit(self, x, y, **kwargs)

    def evaluate(self, x, y, batch_size=256) -> tuple[float, float]:
        """Mean loss and accuracy on (x, y); see ``scratchcnn.engine.inference.loss_and_accuracy``."""
        return _training_api().loss_and_accuracy(self, x, y, batch_size=batch_size)

    def predict(self, x, batch_size=256) -> np.ndarray:
        """Class probabilities (N, num_classes) float32 on the host, in inference mode."""
        return softmax(_training_api().predict_logits(self, x, batch_size=batch_size)).astype(np.float32)


def activation_elements(model: "Sequential", input_shape=None) -> tuple[int, int, int]:
    """One image's work in a model, from its configuration alone (``input_shape``: (C, H, W),
    default ``model.input_shape``).

    Returns ``(activations, largest unfolded input, flops)``: the elements of the
    input and of every layer's output (all held during a forward pass), the largest
    convolution's im2col matrix ``C_in*kh*kw*H_out*W_out``, and ``model.flops()``.

    Raises ValueError if the layers do not chain (``Sequential.output_shapes``).
    """
    input_shape = tuple(input_shape or model.input_shape or ())
    shapes = model.output_shapes(input_shape)
    shape, unfolded = input_shape, 0
    for layer, out in zip(model.layers, shapes):
        if hasattr(layer, "kernel_size") and hasattr(layer, "in_channels") and len(out) == 3:
            unfolded = max(unfolded, layer.in_channels * math.prod(layer.kernel_size) * out[1] * out[2])
        shape = out
    activations = math.prod(input_shape) + sum(math.prod(s) for s in shapes)
    return activations, unfolded, model.flops(input_shape)
