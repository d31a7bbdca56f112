"""``python -m scratchcnn.evaluate``: re-compute a saved model's test metrics and plots.

The test split of the data set named in the model file is standardised with the
model's stored ``normalization`` (exactly as in training), evaluated, and
``metrics.json``, ``confusion_matrix.png`` and ``samples.png`` are written, plus
``history.csv`` and ``curves.png`` from the run's checkpoint when there is one
(``scratchcnn.apps.report.write_test_report``). They go to ``RUN_DIR/evaluation/``
(or ``--out``), so the files the training run wrote are never overwritten.

Examples
--------
    python -m scratchcnn.evaluate runs/fashion-20261123-120000
    python -m scratchcnn.evaluate runs/fashion-20261123-120000/best_model.npz --out best-eval
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import kernels
from scratchcnn.apps import cli
from scratchcnn.files.checkpoint import CHECKPOINT_FORMAT
from scratchcnn.data import DATASET_NAMES, DataSplits, load_raw, normalize
from scratchcnn.errors import ConfigError, ModelFileError
from scratchcnn.files.loading import resolve_model_file
from scratchcnn.files.runfolder import RunFolder, remove_temporaries
from scratchcnn.apps.report import write_test_report
from scratchcnn.files.serialization import CHECKPOINT_FILE, EVALUATION_DIR, MODEL_FILE, load_model, read_archive
from scratchcnn.engine.training import TrainState

__all__ = ["load_test_split", "run_history", "evaluate_saved_model", "main"]

PROG = "python -m scratchcnn.evaluate"


def load_test_split(path, model, meta: dict, data_dir=None, progress: bool = True) -> DataSplits:
    """The test set of the model's data set, standardised with the model's normalisation.

    The training and validation splits are left empty (``write_test_report``
    needs only the test split).

    Raises
    ------
    ModelFileError
        If the model file names no known data set.
    ConfigError
        If the data set's class names or image shape differ from the model's.
    DataError
        If the data set's files are missing or corrupt.
    """
    dataset = meta.get("dataset")
    if dataset not in DATASET_NAMES:
        raise ModelFileError(f"{path}: field 'dataset' is {dataset!r}, expected one of "
                             f"{', '.join(DATASET_NAMES)} (evaluate needs to know the test set)")
    _, _, x_raw, y_test, class_names, scale, files = load_raw(dataset, data_dir, progress)
    if list(class_names) != list(meta["class_names"]):
        raise ConfigError(f"{path}: class names {meta['class_names']} differ from the {dataset} test set's "
                          f"{list(class_names)}")
    norm = meta["normalization"]
    x_test = normalize(x_raw, scale, norm["mean"], norm["std"])
    if tuple(x_test.shape[1:]) != tuple(model.input_shape):
        raise ConfigError(f"{path}: the model takes images of shape {tuple(model.input_shape)}, the {dataset} "
                          f"test set has {tuple(x_test.shape[1:])}")
    empty_x, empty_y = x_test[:0], y_test[:0]
    return DataSplits(empty_x, empty_y, empty_x, empty_y, x_test, y_test, list(class_names),
                      _stat(norm["mean"]), _stat(norm["std"]), dataset, files)


def _stat(value):
    """A stored mean or std as ``DataSplits`` holds it: a float, or a tuple of per-channel floats."""
    return tuple(float(v) for v in value) if isinstance(value, list) else float(value)


def run_history(run_dir, log=print) -> dict | None:
    """The per-epoch history stored in ``run_dir/checkpoint.npz``, or None.

    None without a checkpoint, and also when the checkpoint cannot be read: the
    history only adds ``history.csv`` and ``curves.png`` to an evaluation, whose
    model file is fine, so ``log`` gets one line saying why they are missing.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        meta, _ = read_archive(path, CHECKPOINT_FORMAT)
        try:
            return TrainState.from_json(meta.get("train_state")).history
        except ValueError as exc:
            raise ModelFileError(f"{path}: bad checkpoint field: {exc}") from None
    except ModelFileError as exc:
        log(f"warning: no history.csv or curves.png: {exc}")
        return None


# What an evaluation writes; found in its --out without an evaluation's metrics.json, they are someone else's.
REPORT_FILES = ("confusion_matrix.png", "curves.png", "history.csv", "metrics.json", "samples.png")


def _foreign_files(out: Path) -> list[str]:
    """The files of ``out`` that an evaluation would overwrite and that no earlier evaluation wrote
    (an evaluation's ``metrics.json`` names its ``model_file``; a training run's does not)."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
        if isinstance(metrics, dict) and "model_file" in metrics:
            return []
    except (OSError, ValueError):
        pass
    return [name for name in REPORT_FILES if os.path.lexists(out / name)]


def evaluate_saved_model(target, out=None, data_dir=None, backend=None, progress=True, log=print,
                         force: bool = False) -> dict:
    """Evaluate a run folder's ``model.npz`` (or a model file) on its test set and write the reports.

    Parameters
    ----------
    target : path of a run folder or of a model ``.npz``
    out : path, optional; default ``<run folder>/evaluation``
    data_dir, backend, progress : as for ``scratchcnn.train``
    force : bool, write into ``out`` even if it holds files of the reports' names that no
        evaluation wrote

    Returns
    -------
    The metrics dict written to ``out/metrics.json``.

    Raises
    ------
    ConfigError
        If ``out`` is a training run's folder (its reports would be overwritten), or
        (without ``force``) holds other files of the reports' names.
    FolderBusy
        If a training run holds the run folder, or another evaluation ``out``.
    OutputError
        If ``out`` cannot be created or written.
    ModelFileError, DataError
        For a model file or data set that cannot be loaded.
    """
    path = resolve_model_file(target)
    run_dir = path.parent
    out = Path(out) if out else run_dir / EVALUATION_DIR
    if (out / CHECKPOINT_FILE).exists() or (out / MODEL_FILE).exists():
        raise ConfigError(f"--out {out}: the folder holds a training run, whose reports evaluate would "
                          "overwrite; choose another --out")
    if not force and (found := _foreign_files(out)):
        raise ConfigError(f"--out {out}: the folder already holds {', '.join(found)}, which this evaluation "
                          "would overwrite; choose another --out (or pass --force)")
    with ExitStack() as held:
        if (run_dir / CHECKPOINT_FILE).exists():  # a training run's folder: not while it trains
            held.enter_context(RunFolder(run_dir, create=False, read_only_ok=True))
        held.enter_context(RunFolder(out, what="output folder"))
        for folder in {run_dir, out}:
            for leftover in remove_temporaries(folder):
                log(f"removed {leftover}, left by an interrupted write")
        return _evaluate(path, run_dir, out, data_dir, backend, progress, log)


def _evaluate(path, run_dir, out, data_dir, backend, progress, log) -> dict:
    model, meta = load_model(path, backend=backend)
    splits = load_test_split(path, model, meta, data_dir, progress)
    info = {"model_file": str(path), "dataset": splits.name, "epoch": meta.get("epoch"),
            "backend": model.K.name, "test_images": len(splits.y_test), "parameters": model.num_params()}
    result = write_test_report(out, model, splits, run_history(run_dir, log), info, log=log)
    log(f"test accuracy {result['test_accuracy']:.4f}  test loss {result['test_loss']:.4f}; wrote {out}")
    recorded = run_dir / "metrics.json"
    if path.name == MODEL_FILE and recorded.is_file():
        try:
            before = json.loads(recorded.read_text())
            log(f"the training run recorded test accuracy {before['test_accuracy']:.4f}  "
                f"test loss {before['test_loss']:.4f} in {recorded}")
        except (OSError, ValueError, KeyError, TypeError):
            pass  # only a courtesy comparison; the new metrics are written either way
    return result


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description="Re-compute the test metrics and plots of a saved model.")
    p.add_argument("run", type=cli.path, metavar="RUN_DIR|MODEL.npz",
                   help=f"a run folder (uses its {MODEL_FILE}) or a model file")
    p.add_argument("--out", type=cli.path, help="folder for the reports (default: RUN_DIR/evaluation)")
    p.add_argument("--data-dir", type=cli.path, help="folder holding the data set's files (searched first)")
    p.add_argument("--backend", choices=sorted(kernels.BACKENDS),
                   help="kernel backend (default: $SCRATCHCNN_BACKEND, else the fastest available)")
    p.add_argument("--no-progress", action="store_true", help="no download progress bars")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it holds files of the reports' names that no evaluation wrote")
    return p


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    evaluate_saved_model(args.run, args.out, args.data_dir, args.backend, progress=not args.no_progress,
                         force=args.force)
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
