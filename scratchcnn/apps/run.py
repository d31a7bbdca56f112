"""A training run and its folder: start one, resume one, finish one.

``python -m scratchcnn.train`` parses its arguments and calls ``start_run`` or
``resume_run``; everything a run does happens here:

- ``start_run``: a new run folder, a freshly initialised model, training, ``finish_run``;
- ``resume_run``: the model, optimizer and ``TrainState`` of the folder's
  ``checkpoint.npz``, training to the end, ``finish_run`` (also for a run whose
  training was complete but whose reports were not all written);
- ``finish_run``: ``model.npz``, then the test-set reports (``scratchcnn.apps.report``).

A run's options (``config``, a ``scratchcnn.apps.config.RunConfig``) are stored in
every checkpoint (``RunConfig.to_dict()``), so a resumed run keeps them; they are
checked again when read back (``RunConfig.from_stored``).

The run drives the trainer one epoch at a time (``Trainer.epochs``) and writes the
checkpoint and the best model between epochs: the training loop knows nothing of run
folders.
"""
from __future__ import annotations

import json
import math
import os
import platform
import signal
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchcnn.apps.config import DEFAULT_EPOCHS, FOLDER, RESUME_OPTIONS, RUN_OPTIONS, RunConfig
from scratchcnn.engine.augment import Augment, Pipeline, RandomErasing, crop_padding
from scratchcnn.files.checkpoint import load_checkpoint, save_checkpoint
from scratchcnn.data import load_dataset
from scratchcnn.data.folder import load_folder
from scratchcnn.data.images import RESIZE
from scratchcnn.errors import ConfigError, TrainingDiverged
from scratchcnn.files.loading import resolve_model_file
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import OPTIMIZERS
from scratchcnn.nn.presets import build_model
from scratchcnn.apps.report import METRICS_FILE, write_test_report, write_training_report
from scratchcnn.files.runfolder import RunFolder, remove_temporaries
from scratchcnn.files.serialization import (BEST_MODEL_FILE, CHECKPOINT_FILE, EVALUATION_DIR, MODEL_FILE, MODEL_FORMAT,
                                     param_arrays, read_archive, save_model)
from scratchcnn.engine.training import TrainState, Trainer
from scratchcnn.files.transfer import describe_difference, init_from, parse_layer_choice, select_layers

__all__ = ["RunConfig", "RUN_OPTIONS", "RESUME_OPTIONS", "DEFAULT_EPOCHS", "RunOutcome", "start_run", "resume_run",
           "finish_run", "score_test", "is_complete", "make_optimizer", "make_augment", "default_run_dir",
           "model_extras"]

@dataclass
class RunOutcome:
    """How a call of ``start_run``/``resume_run`` ended.

    ``status`` is "finished" (trained and reported), "already complete" (a resumed
    run with nothing left to do) or "interrupted" (Ctrl-C or SIGTERM; a mid-epoch
    checkpoint was saved; ``stop_signal`` says which). ``metrics`` is the dict written
    to ``metrics.json`` when finished.
    """

    run_dir: Path
    status: str
    state: TrainState
    metrics: dict | None = None
    stop_signal: int | None = None

    @property
    def signal_name(self) -> str:
        """"SIGINT" or "SIGTERM" for an interrupted run, else ""."""
        return signal.Signals(self.stop_signal).name if self.stop_signal else ""


def default_run_dir(dataset: str) -> Path:
    """``runs/<dataset>-<YYYYmmdd-HHMMSS>``, relative to the working folder."""
    return Path(f"runs/{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")


def make_optimizer(config: RunConfig):
    """The optimizer a run's config asks for (``optimizer``, ``lr``, ``momentum``, ``weight_decay``)."""
    if config.optimizer == "sgd":
        return OPTIMIZERS["SGD"](config.lr, momentum=config.sgd_momentum, weight_decay=config.weight_decay)
    return OPTIMIZERS["Adam"](config.lr, weight_decay=config.weight_decay)


def make_augment(config, splits):
    """The run's augmentation (``scratchcnn.engine.augment``), or None when the config asks for none.

    ``augment``: shifts of up to 2 pixels (grey) or random crops of the image padded by 4
    (colour); ``random_crop``: random crops of the image zero-padded by ``crop_padding``
    pixels (4 on 32x32, 3 on 28x28); both with mirror images for fashion and cifar10. Then
    ``random_erasing`` (a probability, 0 for none): Zhong et al.'s random erasing with the
    paper's area and aspect ranges. ``config``: anything with those attributes and ``dataset``
    (a ``RunConfig``).
    """
    flip = config.dataset in ("fashion", "cifar10")
    if splits.input_shape[0] > 1:
        # Colour: the border is black after normalisation (He et al., 2016, "Deep Residual Learning",
        # Section 4.2, CIFAR-10: crops of the image padded by 4 pixels, and mirror images).
        fill = tuple(-m / s for m, s in zip(splits.mean, splits.std))
    else:
        fill = float(splits.x_train.min())  # the normalised value of a 0 (black) pixel
    shift = None
    if config.random_crop:
        shift = Augment(max_shift=crop_padding(splits.input_shape[-1]), flip=flip, fill=fill)
    elif config.augment:
        shift = Augment(max_shift=4 if splits.input_shape[0] > 1 else 2, flip=flip, fill=fill)
    erase = None
    if config.random_erasing:
        erase = RandomErasing(p=config.random_erasing, mean=splits.mean, std=splits.std)
    if shift is None or erase is None:
        return shift or erase
    return Pipeline(shift, erase)


# Files a run writes besides its checkpoint, model and metrics.json: found in a folder that holds no
# run, they are someone else's, not to be overwritten without --force.
REPORT_FILES = ("best_model.npz", "confusion_matrix.png", "curves.png", "history.csv", "samples.png")


def start_run(config: RunConfig, out=None, backend=None, progress: bool = True, log=print,
              force: bool = False, on_epoch=None, test: bool = True) -> RunOutcome:
    """Train a new model as ``config`` says, into the run folder ``out``, and finish the run.

    Parameters
    ----------
    config : RunConfig (checked)
    out : path, optional; default ``default_run_dir(config.dataset)``
    backend : str, optional; see ``kernels.get`` (default ``config.backend``)
    progress : bool, progress bars
    log : callable receiving each line to print
    force : bool, write into ``out`` even if it holds files of the names the run writes
        (``REPORT_FILES``) that are not a run's
    on_epoch : callable, optional
        ``on_epoch(epoch, row) -> bool`` after each epoch (``Trainer.fit``'s callback
        signature: epochs complete, that epoch's history row), before its checkpoint;
        a true result stops training there, recorded in the checkpoint as a stop
        (``stopped_early``, so resuming it trains no further), and the run is finished
        with the weights it has (``scratchcnn.apps.tune`` prunes trials so).
    test : bool
        Score the test set when finishing (``finish_run``); False leaves it
        untouched (a tuning trial is chosen on validation accuracy only).

    The run folder is created and locked (``scratchcnn.files.runfolder.RunFolder``)
    before the data loads, so a folder that cannot be written fails at once; if
    the run fails before its first checkpoint, the folder is removed again.

    Raises
    ------
    ConfigError
        If ``out`` already holds a run or an evaluation's reports, or (without ``force``)
        other files of the names the run writes.
    FolderBusy
        If another process holds ``out``.
    OutputError
        If ``out`` cannot be created or written (the message names the path).
    TrainingDiverged
        If the loss became NaN or infinite; the message says what was kept.
    DataError, ModelFileError, kernels.BackendUnavailable
        As the data and model code raise them.
    """
    run_dir = Path(out) if out else default_run_dir(config.dataset)
    _check_new_run_dir(run_dir, force)
    with RunFolder(run_dir):
        _check_new_run_dir(run_dir, force)  # again, now that no other process can be writing there
        config, splits = _load_data(config, progress, log)
        model = build_model(config.model, splits.input_shape, len(splits.class_names), seed=config.seed,
                            backend=backend or config.backend)
        apply_transfer(model, config, log)
        model.compile(make_optimizer(config), SoftmaxCrossEntropy(config.label_smoothing))
        return _train_and_finish(run_dir, model, None, config, splits, progress, log, on_epoch, test)


def _check_new_run_dir(run_dir: Path, force: bool = False) -> None:
    """Refuse a folder that holds a run, an evaluation's reports, or is a run's ``evaluation`` folder,
    and without ``force`` one holding files the run would overwrite (``REPORT_FILES``)."""
    if (run_dir / CHECKPOINT_FILE).exists() or (run_dir / MODEL_FILE).exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; continue it with --resume {run_dir} "
                          "or choose another --out")
    if (run_dir / METRICS_FILE).exists() or (run_dir.name == EVALUATION_DIR
                                             and (run_dir.parent / MODEL_FILE).exists()):
        raise ConfigError(f"--out {run_dir}: the folder holds (or is meant for) the reports of an evaluation; "
                          "training would overwrite them; choose another --out")
    found = [name for name in REPORT_FILES if os.path.lexists(run_dir / name)]
    if found and not force:
        raise ConfigError(f"--out {run_dir}: the folder already holds {', '.join(found)}, which this run would "
                          "overwrite; choose another --out (or pass --force)")


def is_complete(run_dir, state: TrainState) -> bool:
    """Whether the run's reports are all written for the training state ``state``.

    ``metrics.json`` is written last (``scratchcnn.apps.report.write_test_report``) and
    records ``epochs_completed``; a run killed while writing its reports, or
    trained further since, has none or an older one.
    """
    try:
        metrics = json.loads((Path(run_dir) / METRICS_FILE).read_text())
        return isinstance(metrics, dict) and metrics.get("epochs_completed") == state.epoch
    except (OSError, ValueError):
        return False


def apply_transfer(model, config: RunConfig, log=print) -> None:
    """``init_from`` (with ``init_layers``) and ``freeze`` of a run's config, applied to a new model.

    ``init_from``: a run folder or model file whose matching layers are copied
    (``scratchcnn.files.transfer.init_from``; ``init_layers``, "N" or "name,name", limits
    which); ``freeze``: "N" (the first N layers) or layer names to keep fixed
    (``Sequential.freeze``).

    Raises
    ------
    ConfigError
        For a model file that does not exist, no matching layer, an unknown layer
        name, or a freeze that leaves nothing to train.
    ModelFileError
        If the ``init_from`` file cannot be read.
    """
    report = None
    if config.init_from:
        layers = (select_layers(model, parse_layer_choice(config.init_layers)) if config.init_layers
                  else None)
        report = init_from(model, resolve_model_file(config.init_from), layers)
        log(report.summary())
        differs = describe_difference(report.input_shape, model.input_shape)
        if differs and report.skipped:
            log(f"note: {differs}")
    if config.freeze:
        names = select_layers(model, parse_layer_choice(config.freeze))
        if not names:  # --freeze 0
            return
        fresh = [name for name, _ in (report.skipped if report else []) if name in names]
        if fresh:
            raise ConfigError(_unloaded_frozen_message(config, fresh, report, model))
        try:
            model.freeze(names)
        except ValueError as exc:
            raise ConfigError(f"--freeze {config.freeze}: {exc}") from None
        first = next(layer.name for layer in model.layers if layer.params and layer.trainable)
        log(f"frozen: {', '.join(names)} (no updates; backpropagation stops at {first})")


def _unloaded_frozen_message(config: RunConfig, fresh: list, report, model) -> str:
    """Why freezing layers that ``--init-from`` could not load is refused, and what to change."""
    message = (f"--freeze {config.freeze}: {', '.join(fresh)} cannot be loaded from --init-from "
               f"{config.init_from} and would stay frozen at random weights")
    differs = describe_difference(report.input_shape, model.input_shape)
    if not differs:
        return f"{message} ({'; '.join(f'{n}: {w}' for n, w in report.skipped if n in fresh)})"
    message += f": {differs}"
    if config.dataset == FOLDER and report.input_shape:
        c, h, w = report.input_shape
        return f"{message}; train with --channels {c} --image-size {h}x{w} to match it, or freeze fewer layers"
    return f"{message}; freeze fewer layers"


def resume_run(run_dir, epochs=None, data_dir=None, backend=None, progress: bool = True,
               log=print) -> RunOutcome:
    """Continue the run in ``run_dir`` from its checkpoint and finish it.

    Parameters
    ----------
    run_dir : path of a run folder holding ``checkpoint.npz``
    epochs : int, optional; train to this many epochs instead of the stored number
    data_dir : path, optional; where the data set's files are now
    backend, progress, log : as for ``start_run``; the backend defaults to the run's own
        when it is available here (results are bit-exact only on the same backend)

    A run whose training is complete but whose reports are not (killed or out of
    disk space while writing them) gets them written. Temporary files that killed
    writes left in the folder are removed first.

    Raises
    ------
    ConfigError
        If the folder holds no checkpoint, or ``epochs`` is below the epochs already done.
    FolderBusy
        If another process holds the folder.
    ModelFileError
        If the checkpoint cannot be loaded, or its stored options lack one, name an
        unknown one or hold a value the command line would refuse (``RunConfig.from_stored``).
    TrainingDiverged
        As for ``start_run``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise ConfigError(f"--resume {run_dir}: no {CHECKPOINT_FILE} in that folder")
    with RunFolder(run_dir, create=False):
        for path in remove_temporaries(run_dir):
            log(f"removed {path}, left by an interrupted write")
        return _resume(run_dir, epochs, data_dir, backend, progress, log)


def _resume(run_dir: Path, epochs, data_dir, backend, progress: bool, log) -> RunOutcome:
    model, state, stored = load_checkpoint(run_dir / CHECKPOINT_FILE, backend=backend)
    config = RunConfig.from_stored(stored, run_dir / CHECKPOINT_FILE)
    model.loss.label_smoothing = config.label_smoothing  # checkpoints restore a plain loss
    if data_dir:
        config = config.replace(data_dir=data_dir)
    if epochs:
        if epochs < state.epoch:
            raise ConfigError(f"--epochs {epochs}: the run in {run_dir} has already completed "
                              f"{state.epoch} epochs")
        config = config.replace(epochs=epochs)
    trained = state.epoch >= config.epochs or state.stopped_early
    if trained and is_complete(run_dir, state):
        log(f"{run_dir} is complete ({state.epoch} epochs); nothing to do (to train longer, pass a "
            f"larger --epochs; to re-compute its test metrics: python -m scratchcnn.evaluate {run_dir})")
        return RunOutcome(run_dir, "already complete", state)
    if trained:
        log(f"{run_dir}: training is complete ({state.epoch} epochs) but its reports are not; writing them")
        config, splits = _load_data(config, progress, log)
        metrics = finish_run(run_dir, model, splits, state, config, log)
        return RunOutcome(run_dir, "finished", state, metrics)
    log(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}")
    config, splits = _load_data(config, progress, log)
    return _train_and_finish(run_dir, model, state, config, splits, progress, log)


def _load_data(config: RunConfig, progress: bool, log=print) -> tuple:
    """``(config, splits)``: the run's data splits, and its config; for an image folder, the config
    with the image size and channels chosen (so the checkpoint holds them and a resumed run reads
    the same)."""
    if config.dataset != FOLDER:
        return config, load_dataset(config.dataset, config.data_dir, val_fraction=config.val_fraction,
                                    train_limit=config.train_limit, seed=config.seed, progress=progress)
    splits = load_folder(config.data_dir, val_fraction=config.val_fraction, train_limit=config.train_limit,
                         seed=config.seed, image_size=config.image_size, channels=config.channels,
                         test_fraction=config.test_fraction, strict=config.strict, progress=progress, log=log)
    chosen = config.replace(image_size=tuple(splits.info["image_size"]), channels=int(splits.info["channels"]))
    return chosen, splits


def model_extras(config: RunConfig, splits) -> dict:
    """The fields besides weights that a run's model file records: the data set, and for an
    image folder how its images were prepared (``predict`` and ``serve`` repeat it; ``evaluate``
    finds the folder and its test split again)."""
    if config.dataset != FOLDER:
        return {"dataset": config.dataset}
    return {"dataset": FOLDER, "preprocessing": RESIZE,
            "folder": {"path": splits.info["folder"], "image_size": splits.info["image_size"],
                       "channels": splits.info["channels"], "test_fraction": splits.info["test_fraction"]}}


def _normalization(config: RunConfig, splits) -> dict:
    return {"mean": splits.mean, "std": splits.std, "scale": 255.0 if config.dataset != "digits" else 16.0}


def _train_and_finish(run_dir: Path, model, state, config: RunConfig, splits, progress: bool,
                      log, on_epoch=None, test: bool = True) -> RunOutcome:
    """Train ``model`` to ``config.epochs`` with a checkpoint after every epoch, then ``finish_run``."""
    config = config.replace(backend=model.K.name)
    normalization = _normalization(config, splits)
    stored = config.to_dict()
    log(f"{config.dataset}: {len(splits.y_train)} train, {len(splits.y_val)} validation, "
        f"{len(splits.y_test)} test images; backend {model.K.name}; run folder {run_dir}")
    log(model.summary())
    if model.frozen:
        trainable = sum(int(np.prod(p.shape)) for _, p, _ in model.parameters())
        log(f"Trainable params: {trainable:,} ({len(model.frozen)} frozen layers)")
    trainer = Trainer.from_config(model, config, augment=make_augment(config, splits), progress=progress,
                                  log=log, state=state)
    if state is not None and config.early_stopping and (run_dir / BEST_MODEL_FILE).exists():
        _, arrays = read_archive(run_dir / BEST_MODEL_FILE, MODEL_FORMAT)
        trainer.best_weights = param_arrays(arrays)
    keep_best = config.save_best or config.early_stopping
    try:
        with closing(trainer.epochs(splits.x_train, splits.y_train, config.epochs,
                                    (splits.x_val, splits.y_val))) as epochs:
            for row in epochs:
                if keep_best and trainer.state.best_epoch == trainer.state.epoch:  # validation loss improved
                    save_model(run_dir / BEST_MODEL_FILE, model, splits.class_names, normalization,
                               **model_extras(config, splits), epoch=trainer.state.epoch)
                if on_epoch is not None and on_epoch(trainer.state.epoch, row):
                    trainer.state.stopped_early = True  # the generator ends; resuming the checkpoint trains no further
                save_checkpoint(run_dir / CHECKPOINT_FILE, model, trainer.state, stored)
    except TrainingDiverged as exc:
        kept = (f"the last good checkpoint is {run_dir / CHECKPOINT_FILE}" if (run_dir / CHECKPOINT_FILE).exists()
                else "no epoch completed, so there is no checkpoint")
        raise TrainingDiverged(f"{exc}; {kept}") from None
    if trainer.state.interrupted:
        save_checkpoint(run_dir / CHECKPOINT_FILE, model, trainer.state, stored)
        return RunOutcome(run_dir, "interrupted", trainer.state, stop_signal=trainer.stop_signal)
    metrics = finish_run(run_dir, model, splits, trainer.state, config, log, test=test)
    return RunOutcome(run_dir, "finished", trainer.state, metrics)


def finish_run(run_dir, model, splits, state: TrainState, config: RunConfig, log=print, test: bool = True) -> dict:
    """Write a trained run's ``model.npz``, then its test-set reports (``scratchcnn.apps.report``).

    With ``test=False`` the test set is not touched: ``metrics.json`` holds the
    run's facts and the last epoch's validation figures only
    (``report.write_training_report``); ``score_test`` adds the test reports later.

    Returns the metrics dict written to ``metrics.json``.
    """
    run_dir = Path(run_dir)
    save_model(run_dir / MODEL_FILE, model, splits.class_names, _normalization(config, splits),
               **model_extras(config, splits), epoch=state.epoch)
    per_second = state.train_images / state.train_seconds if state.train_seconds else None
    info = {"dataset": config.dataset, "model": config.model, "epochs": config.epochs,
            "epochs_completed": state.epoch, "stopped_early": state.stopped_early, "best_epoch": state.best_epoch,
            "batch_size": config.batch_size, "lr": config.lr, "seed": config.seed,
            "backend": model.K.name, "train_images": len(splits.y_train), "val_images": len(splits.y_val),
            "test_images": len(splits.y_test), "train_seconds": state.train_seconds,
            "train_images_per_second": per_second, "compile_seconds": state.compile_seconds,
            "config": config.replace(backend=model.K.name).to_dict(), "parameters": model.num_params(),
            "machine": machine()}
    if splits.info:  # an image folder: class counts per split, skipped files, size, channels
        info["class_counts"] = splits.info["class_counts"]
        info["data"] = {key: value for key, value in splits.info.items() if key != "class_counts"}
    if state.history["epoch"]:  # the last epoch's; a trial of scratchcnn.tune is ranked on them
        info["val_accuracy"], info["val_loss"] = state.history["val_accuracy"][-1], state.history["val_loss"][-1]
    if not test:
        metrics = write_training_report(run_dir, state.history, info)
        log(f"validation accuracy {metrics.get('val_accuracy', math.nan):.4f} after {state.epoch} epochs "
            f"({state.train_seconds:.1f} s of training; test set not scored); wrote {run_dir}")
        return metrics
    metrics = write_test_report(run_dir, model, splits, state.history, info, log=log, tta_flip=config.tta_flip)
    # Compiling (a first run's warm-up) is reported apart: it is not training time.
    compiling = f", after {state.compile_seconds:.1f} s compiling kernels" if state.compile_seconds >= 0.05 else ""
    log(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
        f"({state.train_seconds:.1f} s of training, {per_second or 0:.0f} images/s{compiling}); wrote {run_dir}")
    return metrics


def score_test(run_dir, backend=None, progress: bool = False, log=print) -> dict:
    """Score a run finished with ``test=False`` on the test set: ``finish_run`` again, with ``test=True``.

    The model is the checkpoint's, which holds the weights of ``model.npz`` (the
    checkpoint is written after the last epoch, early stopping's restore included).
    Returns the metrics dict written to ``metrics.json``.

    Raises
    ------
    ConfigError
        If the folder holds no checkpoint.
    FolderBusy
        If another process holds the folder.
    ModelFileError, DataError
        As ``resume_run``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise ConfigError(f"{run_dir}: no {CHECKPOINT_FILE} in that folder")
    with RunFolder(run_dir, create=False):
        model, state, stored = load_checkpoint(run_dir / CHECKPOINT_FILE, backend=backend)
        config = RunConfig.from_stored(stored, run_dir / CHECKPOINT_FILE)
        model.loss.label_smoothing = config.label_smoothing  # checkpoints restore a plain loss
        config, splits = _load_data(config, progress, log)
        return finish_run(run_dir, model, splits, state, config, log)


def machine() -> dict:
    """Versions and processor of this machine, recorded in ``metrics.json``."""
    import numba

    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()}

