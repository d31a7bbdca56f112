"""The figures of a finished study for the README (issue 24, item 5), and the retraining command.

    python benchmarks/tune_summary.py STUDY_DIR [--study NAME]              # markdown on stdout
    python benchmarks/tune_summary.py STUDY_DIR --retrain-args --epochs 5  # the best trial's train options

Reads the study from ``STUDY_DIR/study.db`` (what ``python -m scratchcnn.tune`` wrote) and prints:
trials by state, epochs trained against the epochs the same trials would have trained without
pruning, the seconds the trials took and an estimate of the seconds pruning saved (the epochs
pruning cut, times the median seconds per epoch of the finished trials), and the best trial.
With ``--retrain-args`` it prints only the ``scratchcnn.train`` options of the best trial, on the
full training set (``--train-limit`` dropped) for ``--epochs`` epochs (``--limit N`` keeps a limit,
for a quick check of the script).
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import optuna

from scratchcnn.apps.tune.results import train_command


def _load(study_dir: Path, name: str | None):
    storage = f"sqlite:///{(study_dir / 'study.db').resolve()}"
    names = optuna.get_all_study_names(storage)
    name = name or (names[0] if len(names) == 1 else None)
    if name is None:
        sys.exit(f"{study_dir}: {len(names)} studies ({', '.join(names)}); choose one with --study")
    return optuna.load_study(study_name=name, storage=storage)


def summary(study) -> str:
    fixed = study.user_attrs["fixed"]
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    states = {s: [t for t in trials if t.state.name == s] for s in ("COMPLETE", "PRUNED", "FAIL")}
    epochs = fixed["epochs"]
    ran = sum(t.user_attrs.get("epochs", 0) for t in trials)
    per_epoch = [t.user_attrs["seconds"] / t.user_attrs["epochs"] for t in states["COMPLETE"]
                 if t.user_attrs.get("epochs")]
    cut = sum(epochs - t.user_attrs.get("epochs", epochs) for t in states["PRUNED"])
    seconds = sum(t.user_attrs.get("seconds", 0.0) for t in trials)
    record_file = Path(best.user_attrs["run_dir"]).parent / "best.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    lines = [f"study {study.study_name!r}, summarised {time.strftime('%Y-%m-%d %H:%M')}",
             "fixed: " + json.dumps({k: v for k, v in fixed.items()
                                     if v is not None and v is not False and k not in best.params}),
             "",
             "| trials | complete | pruned | failed | epochs trained | without pruning | trial seconds "
             "| seconds saved by pruning (estimate) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| {len(trials)} | {len(states['COMPLETE'])} | {len(states['PRUNED'])} | {len(states['FAIL'])} "
             f"| {ran} | {ran + cut} | {seconds:.0f} "
             f"| {cut * statistics.median(per_epoch):.0f} ({cut} epochs x median "
             f"{statistics.median(per_epoch):.1f} s) |" if per_epoch else "| no finished trial |",
             "",
             f"best: trial {best.number}, validation accuracy {best.value:.4f}, "
             f"test accuracy {record.get('test_accuracy', float('nan')):.4f} (its model, trained on the subset)",
             f"params: {json.dumps(best.params)}"]
    return "\n".join(lines)


def retrain_args(study, epochs: int, limit: int | None) -> str:
    config = {**study.user_attrs["fixed"], **study.best_trial.params, "epochs": epochs, "train_limit": limit}
    return " ".join(shlex.split(train_command(config))[3:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study_dir", type=Path)
    p.add_argument("--study")
    p.add_argument("--retrain-args", action="store_true")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--limit", type=int)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _load(args.study_dir, args.study)
    print(retrain_args(study, args.epochs, args.limit) if args.retrain_args else summary(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
