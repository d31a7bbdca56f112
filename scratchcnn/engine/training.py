"""The training loop: mini-batch gradient descent with validation, early stopping and resumable state.

Inference (logits, probabilities, loss and accuracy) is ``scratchcnn.engine.inference``.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm  # the text bar: it needs no ipywidgets in a notebook

from scratchcnn.engine.inference import loss_and_accuracy
from scratchcnn.engine.schedules import learning_rate
from scratchcnn.errors import ConfigError, TrainingDiverged

__all__ = ["TrainState", "Trainer", "fit", "HISTORY_KEYS"]

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                "images_per_second")


@dataclass
class TrainState:
    """Where a run stands, everything a checkpoint needs besides weights and optimizer moments.

    ``epoch`` epochs are complete and ``step`` steps of the next one (0 at an epoch
    boundary); ``partial`` holds that epoch's ``[loss sum, correct, images, seconds]``
    so far; ``best`` the best validation loss, its epoch and ``wait`` (epochs since).
    ``train_seconds`` counts training steps only; ``compile_seconds`` the kernel
    compilation of the warm-up before training (``Sequential.warm_up``), summed over
    the run's starts and resumes.
    """

    epoch: int = 0
    step: int = 0
    partial: list = field(default_factory=lambda: [0.0, 0.0, 0, 0.0])
    history: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    best_val_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0
    train_seconds: float = 0.0
    train_images: int = 0
    compile_seconds: float = 0.0
    stopped_early: bool = False
    interrupted: bool = False

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict) -> "TrainState":
        """Inverse of ``to_json``.

        Raises
        ------
        ValueError
            For an unknown field, a value of another type than the field's default
            (a checkpoint's JSON is untrusted input), or a malformed history.
        """
        state = cls()
        if not isinstance(data, dict):
            raise ValueError(f"training state is {type(data).__name__}, expected an object")
        for key, value in data.items():
            if not hasattr(state, key):
                raise ValueError(f"unknown training-state field {key!r}")
            if not _same_kind(value, getattr(state, key)):
                raise ValueError(f"training-state field {key!r} is {value!r}, expected type "
                                 f"{type(getattr(state, key)).__name__}")
            setattr(state, key, value)
        history = state.history
        if (set(history) != set(HISTORY_KEYS) or not all(isinstance(v, list) for v in history.values())
                or len({len(v) for v in history.values()}) != 1 or len(history["epoch"]) != state.epoch
                or len(state.partial) != 4 or min(state.epoch, state.step) < 0
                or not all(_same_kind(v, 0.0) for v in state.partial)):
            raise ValueError("training state is inconsistent (history columns, epoch, step or partial sums)")
        return state


def _same_kind(value, default) -> bool:
    """Whether a JSON value fits a field whose default is ``default`` (an int counts as a float)."""
    if isinstance(value, bool) or isinstance(default, bool):
        return type(value) is type(default)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _batches(n: int, batch_size: int):
    return range(0, n, batch_size)


class Trainer:
    """Runs epochs of mini-batch training on a compiled ``Sequential``.

    Parameters
    ----------
    model : Sequential
        Compiled (``model.compile(optimizer, loss)``).
    batch_size : int
        Images per step (the last batch of an epoch may be smaller).
    seed : int
        Seeds the epoch's shuffle (``default_rng([seed, epoch])``) and each batch's
        augmentation (``default_rng([seed, epoch, step])``), so a run resumed from
        any step boundary continues exactly as if uninterrupted.
    base_lr : float, optional
        Learning rate the schedule scales (default: the optimizer's ``lr``).
    lr_schedule : {"constant", "step", "cosine"}
    augment : callable, optional
        ``augment(x_batch, rng) -> x_batch`` on the host (``scratchcnn.engine.augment.Augment``).
    early_stopping : int, optional
        Patience: stop after this many epochs without a lower validation loss and
        restore the best weights (Keras' ``EarlyStopping(restore_best_weights=True)``).
    progress : bool
        Show a tqdm bar per epoch with the running loss and accuracy.
    log : callable
        Receives the one-line summary of each epoch.
    state : TrainState, optional
        Where to continue from (a checkpoint's); default a new run.

    Ctrl-C (SIGINT) or SIGTERM during ``fit`` stops the loop at the next step boundary:
    ``state.interrupted`` is then True, ``stop_signal`` the signal's number, and the
    state is that of the last finished step (a checkpoint of it resumes bit for bit).
    """

    def __init__(self, model, batch_size=64, seed=0, base_lr=None, lr_schedule="constant",
                 augment=None, early_stopping=None, progress=True, log=print, state=None):
        if model.optimizer is None or model.loss is None:
            raise ConfigError("the model is not compiled: call model.compile(optimizer, loss) first")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if early_stopping is not None and early_stopping < 1:
            raise ConfigError(f"early_stopping patience must be >= 1, got {early_stopping}")
        self.model, self.batch_size, self.seed = model, int(batch_size), int(seed)
        self.base_lr = float(base_lr if base_lr is not None else model.optimizer.lr)
        self.lr_schedule, self.augment, self.early_stopping = lr_schedule, augment, early_stopping
        self.progress, self.log = progress, log
        self.state = state or TrainState()
        self.best_weights = None
        self.stop_signal = None  # the signal that interrupted fit (SIGINT or SIGTERM), if one did
        self.stopped_by_callback = False
        self._stop_requested = False
        learning_rate(lr_schedule, 1.0, 0, 0, 1, 1)  # fail now on an unknown schedule name

    @classmethod
    def from_config(cls, model, config, **options) -> "Trainer":
        """A trainer for a run's options: any object with the attributes ``batch_size``, ``seed``,
        ``lr`` (the base rate the schedule scales), ``lr_schedule`` and ``early_stopping``
        (``scratchcnn.apps.config.RunConfig``); ``options`` are the other constructor arguments."""
        return cls(model, batch_size=config.batch_size, seed=config.seed, base_lr=config.lr,
                   lr_schedule=config.lr_schedule, early_stopping=config.early_stopping, **options)

    # -- interruption -------------------------------------------------------------------
    def request_stop(self, signum=None, frame=None):
        """Ask the loop to stop at the next step boundary (the SIGINT and SIGTERM handler)."""
        self._stop_requested = True
        if signum is not None:
            self.stop_signal = signum
            # A second signal of the same kind acts at once (Ctrl-C raises KeyboardInterrupt, SIGTERM ends).
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    # -- the loop ------------------------------------------------------------------------
    def fit(self, x, y, epochs: int, validation_data=None, callbacks=()) -> dict:
        """Train until ``epochs`` epochs are complete (counting any already done), or stopped.

        Parameters
        ----------
        x : ndarray, float32, (N, C, H, W), or ``scratchcnn.data.streaming.NormalizedRows``
            (an image folder's split, standardised batch by batch); y : ndarray, int64, (N,)
        epochs : int
        validation_data : (x_val, y_val), optional
        callbacks : sequence, optional
            Epoch-end hooks, called in order after each epoch's validation, early-stopping
            decision and log line: ``cb.on_epoch_end(epoch, row)`` for an object that has that
            method, else ``cb(epoch, row)``. ``epoch`` is the number of epochs complete
            (1-based), ``row`` that epoch's history row (a dict with ``HISTORY_KEYS``: loss,
            accuracy, val_loss, val_accuracy, lr, seconds, images_per_second). A hook that
            returns True stops training after this epoch (``stopped_by_callback`` becomes
            True; the state is not marked stopped early, so a checkpoint of it would train
            on): pruning a hyperparameter search's trial, for example.

        Returns
        -------
        history : dict of lists, keys ``HISTORY_KEYS``, one entry per epoch.

        Raises
        ------
        TrainingDiverged
            When the loss becomes NaN or infinite, naming the epoch and batch (1-based).
            That batch's update has been applied, so the model's weights are unusable:
            reload the last checkpoint.
        ConfigError
            When x and y do not match the model.
        """
        hooks = [getattr(cb, "on_epoch_end", cb) for cb in callbacks]
        epochs_run = self.epochs(x, y, epochs, validation_data)
        for row in epochs_run:
            if any([bool(hook(row["epoch"], row)) for hook in hooks]):  # every hook sees every epoch
                self.stopped_by_callback = True
                epochs_run.close()
        return self.state.history

    def epochs(self, x, y, epochs: int, validation_data=None):
        """``fit`` one epoch at a time: a generator that yields each finished epoch's history row.

        When it yields, ``state`` is at the epoch boundary (a checkpoint written then resumes
        there) and ``state.best_epoch == state.epoch`` if the validation loss improved.
        The caller may stop iterating at any yield. Arguments and errors as ``fit``.
        """
        self.model.ensure_built(x.shape[1:])
        _check_xy(self.model, x, y)
        if self.state.epoch < epochs and not self.state.stopped_early:
            # Compiling happens here, not in the first epoch: train_seconds and images/s count training only.
            # (a batch size above the set's size is one batch of every image: warm up with that)
            self.state.compile_seconds += self.model.warm_up(min(self.batch_size, len(y)), log=self.log)
        if validation_data is not None and len(validation_data[1]) == 0:
            validation_data = None
        if self.early_stopping and validation_data is None:
            raise ConfigError("early stopping needs a validation set: no image was held out for validation")
        handled = (signal.SIGINT, signal.SIGTERM) if _in_main_thread() else ()
        previous = {signum: signal.getsignal(signum) for signum in handled}
        for signum in handled:
            signal.signal(signum, self.request_stop)
        try:
            # A run that stopped early is finished: resuming its checkpoint trains no further.
            while self.state.epoch < epochs and not self.state.stopped_early and not self._stop_requested:
                self._train_epoch(x, y, epochs)
                if self._stop_requested:
                    break
                yield self._end_epoch(validation_data, epochs)
                if self.state.stopped_early:
                    break
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.state.interrupted = self._stop_requested

    def _train_epoch(self, x, y, epochs):
        model, K, st = self.model, self.model.K, self.state
        n = len(y)
        steps = math.ceil(n / self.batch_size)
        order = np.random.default_rng([self.seed, st.epoch]).permutation(n)
        stats = K.zeros((steps, 2), np.float64)
        # A batch size above the set's size means one batch of every image: allocate no more than that.
        x_batch = np.empty((min(self.batch_size, n),) + x.shape[1:], x.dtype)
        sync_every = K.SYNC_EVERY  # a GPU reports only now and then: reading drains its queue
        bar = tqdm(total=steps, initial=st.step, desc=f"epoch {st.epoch + 1}/{epochs}",
                   disable=not self.progress, leave=False, unit="batch")
        t0, images, synced = time.perf_counter(), 0, st.step
        for step in range(st.step, steps):
            if self._stop_requested:
                break
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            xb = np.take(x, idx, axis=0, out=x_batch[:len(idx)])
            if self.augment is not None:
                xb = self.augment(xb, np.random.default_rng([self.seed, st.epoch, step]))
            model.optimizer.lr = learning_rate(self.lr_schedule, self.base_lr, st.epoch, step, steps, epochs)
            model.train_step(K.asarray(xb), K.asarray(y[idx]), stats[step])
            images += len(idx)
            st.step = step + 1
            if st.step - synced >= sync_every:
                self._sync(stats, synced, st.step, bar, n)
                synced = st.step
        if synced < st.step:
            self._sync(stats, synced, st.step, bar, n)
        bar.close()
        seconds = time.perf_counter() - t0
        st.partial[2] += images
        st.partial[3] += seconds
        st.train_seconds += seconds
        st.train_images += images


    def _sync(self, stats, start, stop, bar, n):
        """Fold steps [start, stop) into the epoch totals; check the loss is finite; update the bar."""
        st = self.state
        rows = self.model.K.to_numpy(stats[start:stop])
        bad = np.flatnonzero(~np.isfinite(rows[:, 0]))
        if bad.size:
            raise TrainingDiverged(f"loss is {rows[bad[0], 0]} at epoch {st.epoch + 1}, batch "
                                   f"{start + bad[0] + 1}; stopped (try a lower --lr)")
        st.partial[0] += float(rows[:, 0].sum())
        st.partial[1] += float(rows[:, 1].sum())
        seen = min(stop * self.batch_size, n)  # images of this epoch so far, before a resume too
        bar.update(stop - bar.n)
        if self.progress:
            bar.set_postfix(loss=f"{st.partial[0] / seen:.4f}", acc=f"{st.partial[1] / seen:.4f}",
                            refresh=False)

    def _end_epoch(self, validation_data, epochs):
        st, h = self.state, self.state.history
        loss_sum, correct, images, seconds = st.partial
        val_loss, val_acc = (loss_and_accuracy(self.model, *validation_data) if validation_data is not None
                             else (math.nan, math.nan))
        row = {"epoch": st.epoch + 1, "loss": loss_sum / images, "accuracy": correct / images,
               "val_loss": val_loss, "val_accuracy": val_acc, "lr": self.model.optimizer.lr,
               "seconds": seconds, "images_per_second": images / seconds if seconds else math.nan}
        for key in HISTORY_KEYS:
            h[key].append(row[key])
        st.epoch, st.step, st.partial = st.epoch + 1, 0, [0.0, 0.0, 0, 0.0]
        improved = val_loss < st.best_val_loss
        if improved:
            st.best_val_loss, st.best_epoch, st.wait = val_loss, st.epoch, 0
            if self.early_stopping:
                # A copy: on host backends named_arrays() returns the live arrays the optimizer updates.
                self.best_weights = {k: np.array(v) for k, v in self.model.named_arrays().items()}
        elif not math.isnan(val_loss):
            st.wait += 1
        # Without a validation split the line leaves the validation columns out, as Keras does.
        validation = f"val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  " if validation_data is not None else ""
        self.log(f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
                 f"{validation}lr {row['lr']:.2e}  {seconds:.1f} s  {row['images_per_second']:.0f} img/s")
        if self.early_stopping and st.wait >= self.early_stopping:
            st.stopped_early = True
            if self.best_weights is not None:
                self.model.load_named_arrays(self.best_weights)
            self.log(f"early stopping: no lower val_loss for {st.wait} epochs; "
                     f"restored the weights of epoch {st.best_epoch}")
        return row


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _check_xy(model, x, y):
    if x.ndim != 4 or len(x) != len(y):
        raise ConfigError(f"expected x (N, C, H, W) and y (N,), got {x.shape} and {y.shape}")
    if model.input_shape is not None and tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ConfigError(f"images of shape {tuple(x.shape[1:])} do not fit a model built for "
                          f"{tuple(model.input_shape)}")
    # (a split read from a uint8 cache, scratchcnn.data.streaming, is finite by construction)
    if isinstance(x, np.ndarray) and not np.all(np.isfinite(x)):
        raise ConfigError("the training images contain NaN or infinite values")
    num_classes = model.output_shapes()[-1][0] if model.input_shape else None
    if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        raise ConfigError(f"labels must be in [0, {num_classes}), found [{y.min()}, {y.max()}]")


def fit(model, x, y, batch_size=64, epochs=1, validation_data=None, seed=0, progress=True,
        **trainer_options) -> dict:
    """Keras-style ``model.fit``: train a compiled model; returns the history dict.

    Parameters are those of ``Trainer`` and ``Trainer.fit`` (``callbacks`` included).
    """
    callbacks = trainer_options.pop("callbacks", ())
    trainer = Trainer(model, batch_size=batch_size, seed=seed, progress=progress, **trainer_options)
    return trainer.fit(x, y, epochs, validation_data, callbacks=callbacks)
