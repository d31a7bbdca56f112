"""One trial: an ordinary training run, in this process, whose validation accuracy feeds the pruner.

A trial trains through the main job's own code (``scratchcnn.apps.run.start_run``)
into ``<study folder>/trial-NNNN``, so ``evaluate``, ``predict``, ``serve`` and
``export`` work on it and ``scratchcnn.train --resume`` could continue it. After
each epoch the validation accuracy is reported to Optuna; when the pruner says
stop, the run stops there and is finished with the weights it has. The test set
is not touched (``start_run(test=False)``): the study ranks trials on validation
accuracy only.
"""
from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

import numba

from scratchcnn.apps.config import RunConfig
from scratchcnn.apps.run import start_run
from scratchcnn.errors import TrainingDiverged

from .space import suggest

__all__ = ["trial_dir", "train_trial", "objective", "TRIAL_LOG"]

TRIAL_LOG = "train.log"  # what the run printed, in the trial's folder (workers share one terminal)


def trial_dir(study_dir, number: int) -> Path:
    """The run folder of trial ``number``: ``<study folder>/trial-0007``."""
    return Path(study_dir) / f"trial-{number:04d}"


def train_trial(config: RunConfig, run_dir: Path, on_epoch, backend=None, log=print):
    """Train one run as the main job does, calling ``on_epoch(epoch, row) -> stop?`` after each epoch.

    The adapter between the study and the run code; returns ``start_run``'s
    ``RunOutcome`` (the test set left unscored).
    """
    return start_run(config, out=run_dir, backend=backend, progress=False, log=log, on_epoch=on_epoch,
                     test=False)


def _file_log(path: Path):
    """A ``log`` that appends each line to ``path`` (created with the run folder, so opened per line)."""
    def log(line=""):
        if path.parent.is_dir():
            with open(path, "a") as f:
                f.write(f"{line}\n")
    return log


def model_accuracy(state) -> float:
    """The validation accuracy of the weights a run kept: the best epoch's if early stopping restored
    it, else the last epoch's (NaN if no epoch ran)."""
    history = state.history["val_accuracy"]
    if not history:
        return math.nan
    restored = state.stopped_early and 0 < state.best_epoch < len(history)
    return float(history[state.best_epoch - 1] if restored else history[-1])


def objective(trial, fixed: dict, space: dict, study_dir, backend=None, say=print) -> float:
    """Optuna's objective: train the trial's run, return its validation accuracy.

    The trial's user attributes record its folder, host, process id, kernel threads, epochs run, seconds and
    whether it was pruned (``scratchcnn.apps.tune.results`` reads them).

    Raises
    ------
    optuna.TrialPruned
        When the pruner stopped it (its run folder is finished all the same).
    TrainingDiverged
        When the loss became NaN (the study marks the trial failed and goes on).
    KeyboardInterrupt
        When Ctrl-C stopped the run (its checkpoint is saved).
    """
    import optuna

    params = suggest(trial, space)
    config = RunConfig.from_values({**fixed, **params})
    run_dir = trial_dir(study_dir, trial.number)
    trial.set_user_attr("run_dir", str(run_dir.resolve()))
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("threads", numba.get_num_threads())  # the cpu kernels' share of the cores
    pruned = []

    def on_epoch(epoch: int, row: dict) -> bool:
        trial.report(row["val_accuracy"], epoch)
        if epoch < config.epochs and trial.should_prune():
            pruned.append(epoch)
            return True
        return False

    say(f"trial {trial.number}: {_params_text(params)} -> {run_dir}")
    t0 = time.perf_counter()
    try:
        outcome = train_trial(config, run_dir, on_epoch, backend, _file_log(run_dir / TRIAL_LOG))
    except TrainingDiverged as exc:
        trial.set_user_attr("error", str(exc))
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        say(f"trial {trial.number}: failed: {exc}")
        raise
    seconds = time.perf_counter() - t0
    if outcome.status == "interrupted":
        raise KeyboardInterrupt
    state = outcome.state
    accuracy = model_accuracy(state)
    trial.set_user_attr("epochs", state.epoch)
    trial.set_user_attr("seconds", seconds)
    trial.set_user_attr("train_seconds", state.train_seconds)
    trial.set_user_attr("val_accuracy", accuracy)
    trial.set_user_attr("pruned", bool(pruned))
    verdict = f"pruned after epoch {pruned[0]}" if pruned else f"{state.epoch} epochs"
    say(f"trial {trial.number}: val_accuracy {accuracy:.4f}, {verdict}, {seconds:.1f} s")
    if pruned:
        raise optuna.TrialPruned(f"validation accuracy {accuracy:.4f} after epoch {pruned[0]}")
    return accuracy


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
