"""A study from start to report: open (or continue) it, run its trials, show and save what it found."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from scratchcnn.files.runfolder import output_error

from . import results
from .space import check_compatible, grid_space, parse_space
from .study import check_fixed, default_storage, make_pruner, open_storage, open_study, shown_url
from .workers import Spec, run_trials, run_workers

__all__ = ["run_study", "prepare_study"]


def prepare_study(spec: Spec, storage_given: bool):
    """Check the study's storage, folder and fixed options before any trial starts; returns the study.

    A ``--storage`` URL given is opened before the study folder is made (a typo
    leaves no folder behind); the default SQLite file needs the folder first.

    Raises
    ------
    ConfigError
        For a storage that cannot be opened, a grid sampler over a range, or a
        study made with other fixed options.
    OutputError
        If the study folder cannot be created.
    """
    import optuna

    optuna.logging.set_verbosity(logging.ERROR)  # not its lines per study, trial and plot: ours say more
    space = parse_space(spec.space)
    if spec.sampler == "grid":
        grid_space(space)
    storage = open_storage(spec.storage) if storage_given else None
    try:
        Path(spec.study_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(spec.study_dir, exc, "create") from None
    storage = storage or open_storage(spec.storage)
    study = open_study(spec.study, storage, None, make_pruner(spec.pruner, spec.fixed["epochs"],
                                                                spec.pruner_startup))
    check_fixed(study, spec.fixed)
    check_compatible(space, study.get_trials(deepcopy=False))
    return study


def run_study(spec: Spec, trials: int, timeout: float | None = None, workers: int = 1, storage_given=False,
              log=print) -> int:
    """Run ``trials`` more trials of the study in ``spec`` (in ``workers`` processes), then report.

    The report: the table of every trial of the study (also other runs' and
    machines'), ``trials.csv``, Optuna's plots as PNG, the best trial scored on the
    test set (once) and its ``scratchcnn.train`` command line, ``best.json``; all
    in the study folder. Returns the exit code (0, or 1 if a worker failed).
    """
    study = prepare_study(spec, storage_given)
    before = study.get_trials(deepcopy=False)
    done = {s: sum(t.state.name == s for t in before) for s in ("COMPLETE", "PRUNED", "FAIL")}
    log(f"study {spec.study!r} in {shown_url(spec.storage)}: "
        + (f"{len(before)} trials so far ({done['COMPLETE']} complete, {done['PRUNED']} pruned, "
           f"{done['FAIL']} failed); continuing" if before else "new"))
    log(f"searching {'; '.join(spec.space)}; sampler {spec.sampler}, pruner {spec.pruner}; "
        f"trials in {spec.study_dir}")
    code = 0
    if trials and workers > 1:
        code = run_workers(spec, workers, trials, timeout, say=log)
    elif trials:
        run_trials(spec, trials, timeout, say=log)
    report(study, spec, log)
    return code


def report(study, spec: Spec, log=print) -> dict | None:
    """Print the table of trials and the best trial; write ``trials.csv``, the plots and ``best.json``."""
    study_dir = Path(spec.study_dir)
    rows = results.trial_rows(study)
    best = results.score_best(study, backend=spec.backend, log=log)
    log(results.format_table(rows, best["trial"] if best else None))
    results.write_trials_csv(study_dir / results.TRIALS_FILE, rows)
    plots = results.write_plots(study, study_dir, log)
    if best is None:
        log("no trial has finished yet: no best trial")
        return None
    best["command"] = results.train_command({**spec.fixed, **best["params"]}, out=f"runs/{spec.study}-best")
    tested = "" if best["test_accuracy"] is None else f", test accuracy {best['test_accuracy']:.4f}"
    log(f"best: trial {best['trial']}, validation accuracy {best['val_accuracy']:.4f}{tested} ({best['run_dir']})")
    log(f"reproduce it with:\n  {best['command']}")
    results.write_best(study_dir, best)
    log(f"wrote {results.TRIALS_FILE}, {results.BEST_FILE}"
        + "".join(f", {p.name}" for p in plots) + f" in {study_dir}{os.sep}")
    return best
