"""What a study's user looks at: the table of trials, the best trial's command line, Optuna's plots,
and the best trial's test score.

Everything here reads the study from its storage, so on any machine of a shared
study it shows every machine's trials; the test set is scored only where the
best trial's folder is.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shlex
import socket
import warnings
from pathlib import Path

from scratchcnn.apps import plots
from scratchcnn.apps.report import METRICS_FILE
from scratchcnn.apps.run import RUN_OPTIONS, score_test
from scratchcnn.files.fileio import atomic_write, atomic_write_text, write_json

__all__ = ["trial_rows", "format_table", "write_trials_csv", "train_command", "write_plots", "score_best",
           "TRIALS_FILE", "BEST_FILE", "PLOT_FILES"]

TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
PLOT_FILES = {"optimization_history.png": "plot_optimization_history",
              "param_importances.png": "plot_param_importances",
              "slice.png": "plot_slice"}


def _state_name(trial) -> str:
    return {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
            "WAITING": "waiting"}[trial.state.name]


def trial_rows(study) -> list[dict]:
    """One dict per trial, in order: ``number``, ``state`` (complete, pruned, failed, running, waiting),
    ``val_accuracy`` (of the kept weights; None if unknown), ``epochs`` run, ``seconds`` (the whole
    trial: data, compiling, training), ``params``, ``run_dir`` and ``host``."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        accuracy = t.value if t.state.name == "COMPLETE" else attrs.get("val_accuracy")
        rows.append({"number": t.number, "state": _state_name(t), "val_accuracy": accuracy,
                     "epochs": attrs.get("epochs"), "seconds": attrs.get("seconds"), "params": dict(t.params),
                     "run_dir": attrs.get("run_dir"), "host": attrs.get("host")})
    return rows


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict], best: int | None = None) -> str:
    """The trials as a text table: number, state, validation accuracy, epochs, seconds, then one column per
    parameter; the best trial marked with ``*``."""
    names = sorted({name for row in rows for name in row["params"]})
    header = ["trial", "state", "val_acc", "epochs", "seconds"] + names
    lines = [[f"{r['number']}{'*' if r['number'] == best else ''}", r["state"],
              "-" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}", _cell(r["epochs"]),
              "-" if r["seconds"] is None else f"{r['seconds']:.1f}"]
             + [_cell(r["params"].get(name)) for name in names] for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(x).rjust(w) for x, w in zip(line, widths)) for line in [header] + lines)


def write_trials_csv(path, rows: list[dict]) -> None:
    """``trials.csv``: the table's columns in full precision, plus the trial's host and folder."""
    names = sorted({name for row in rows for name in row["params"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", "val_accuracy", "epochs", "seconds"] + names + ["host", "run_dir"])
    for r in rows:
        writer.writerow([r["number"], r["state"], r["val_accuracy"], r["epochs"], r["seconds"]]
                        + [r["params"].get(name) for name in names] + [r["host"], r["run_dir"]])
    atomic_write_text(path, buffer.getvalue())


def train_command(config: dict, out=None) -> str:
    """The ``python -m scratchcnn.train`` command line that trains a run with ``config`` (the run options);
    options at their default are left out, ``--dataset`` and ``--epochs`` always given."""
    import argparse

    from scratchcnn.apps.config import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)  # the main job's run options are exactly RunConfig's flags
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    words = ["python -m scratchcnn.train"]
    for key in RUN_OPTIONS:
        action, value = actions[key], config.get(key)
        if action.nargs == 0:  # a flag such as --augment
            if value:
                words.append(action.option_strings[0])
        elif value is not None and (key in ("dataset", "epochs") or value != action.default):
            words += [action.option_strings[0], shlex.quote(repr(value) if isinstance(value, float) else str(value))]
    if out:
        words += ["--out", shlex.quote(str(out))]
    return " ".join(words)


def write_plots(study, study_dir, log=print) -> list[Path]:
    """Optuna's matplotlib plots of the study as PNG in ``study_dir`` (``PLOT_FILES``); a plot Optuna cannot
    draw yet (too few finished trials, one parameter value) is skipped with one line. Returns the files."""
    import optuna.visualization.matplotlib as ovm

    if not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        log("plots: not drawn (no finished trial yet)")
        return []
    written = []
    for name, function in PLOT_FILES.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # these functions are "experimental" in Optuna's words
                drawn = getattr(ovm, function)(study)
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
            log(f"{name}: not drawn ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
            continue
        axes = drawn.flat[0] if hasattr(drawn, "flat") else drawn
        fig = axes.figure
        if not fig.axes or not any(ax.has_data() for ax in fig.axes):
            plots.close(fig)
            log(f"{name}: not drawn (no finished trials to show)")
            continue
        path = Path(study_dir) / name
        atomic_write(path, lambda f: plots.save(fig, f))
        written.append(path)
    return written


def score_best(study, backend=None, log=print) -> dict | None:
    """The best trial (highest validation accuracy among the finished ones), scored on the test set once.

    Returns a dict of the trial's number, parameters, validation accuracy, run
    folder and ``test_accuracy`` (None where the folder is on another machine);
    None when no trial has finished. A best trial already scored (a rerun) is
    not scored again.
    """
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        return None
    best = study.best_trial
    run_dir = Path(best.user_attrs.get("run_dir", ""))
    result = {"trial": best.number, "val_accuracy": best.value, "params": dict(best.params),
              "run_dir": str(run_dir), "host": best.user_attrs.get("host"), "test_accuracy": None}
    metrics_file = run_dir / METRICS_FILE
    if not metrics_file.is_file():
        log(f"best trial {best.number} ran on {result['host']} (folder {run_dir}); its test accuracy is scored "
            f"where that folder is (rerun this command there with --trials 0)"
            if result["host"] != socket.gethostname() else
            f"best trial {best.number}: {metrics_file} is missing; test set not scored")
        return result
    metrics = json.loads(metrics_file.read_text())
    if "test_accuracy" not in metrics:
        log(f"best trial {best.number}: scoring the test set (once, for this trial only)")
        metrics = score_test(run_dir, backend=backend, log=lambda line: None)
    result["test_accuracy"] = metrics["test_accuracy"]
    result["test_loss"] = metrics["test_loss"]
    return result


def write_best(study_dir, best: dict) -> Path:
    """``best.json``: the best trial's number, parameters, validation and test accuracy, folder, command."""
    return write_json(Path(study_dir) / BEST_FILE, best)
