"""Evaluating a trained model on the test set and writing what a practitioner looks at."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from scratchcnn.apps import metrics, plots
from scratchcnn.files.fileio import atomic_write, atomic_write_text, write_json
from scratchcnn.engine.inference import flip_averaged_probabilities, loss_and_accuracy, predict_logits
from scratchcnn.engine.training import HISTORY_KEYS

__all__ = ["write_history_csv", "write_test_report", "data_files", "display_images", "SAMPLE_COUNT", "METRICS_FILE"]

SAMPLE_COUNT = 40  # images in samples.png
METRICS_FILE = "metrics.json"  # written last: its presence means every report is there


def write_history_csv(path, history: dict) -> None:
    """One row per epoch with the columns of ``HISTORY_KEYS``, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HISTORY_KEYS)
    for row in zip(*(history[k] for k in HISTORY_KEYS)):
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
    atomic_write_text(path, buffer.getvalue())


def display_images(x, mean, std) -> np.ndarray:
    """Standardised images back to [0, 1] pixels for display.

    x : (N, C, H, W) float32; mean, std : a float or C floats (``DataSplits.mean``/``std``).
    Returns (N, H, W) for one channel and (N, H, W, C) (channels last, as matplotlib
    draws colour) otherwise, clipped to [0, 1].
    """
    c = x.shape[1]
    pixels = x * np.asarray(std, np.float32).reshape(-1, 1, 1) + np.asarray(mean, np.float32).reshape(-1, 1, 1)
    pixels = np.clip(pixels, 0.0, 1.0)
    return pixels[:, 0] if c == 1 else pixels.transpose(0, 2, 3, 1)


def data_files(splits) -> dict:
    """The files the data set was read from (absolute paths), as ``metrics.json`` records them."""
    if not splits.files:  # digits ships inside scikit-learn
        return {"digits": "sklearn.datasets.load_digits"}
    return {key: str(Path(path).resolve()) for key, path in splits.files.items()}


def _save_figure(fig, path: Path) -> None:
    """Write ``fig`` as PNG atomically (a killed or failed write leaves no half image) and close it."""
    try:
        atomic_write(path, lambda f: plots.save(fig, f))
    finally:
        plots.close(fig)


def write_test_report(run_dir, model, splits, history: dict, info: dict, log=print, tta_flip=False) -> dict:
    """Score ``model`` on ``splits.x_test`` and write the run folder's reports.

    Writes ``history.csv``, ``curves.png``, ``confusion_matrix.png`` and
    ``samples.png`` (the first test images and then some mistakes, ``SAMPLE_COUNT``
    in all, mistakes marked), then, last, ``metrics.json`` (``info`` plus test
    loss/accuracy, per-class precision / recall / F1, macro and weighted averages,
    the confusion matrix), so that a ``metrics.json`` means every report was
    written (``scratchcnn.apps.run`` takes it as the mark of a finished run); prints
    scikit-learn's classification report.
    With ``tta_flip``, ``metrics.json`` also holds ``test_accuracy_flip_tta``: the
    accuracy of the mean prediction over each test image and its mirror image
    (``inference.flip_averaged_probabilities``); every other figure stays that of
    the plain prediction. ``metrics.json`` also records the data files the test
    set was read from (``data_files``).

    Returns the metrics dict.
    """
    run_dir = Path(run_dir)
    test_loss, test_accuracy = loss_and_accuracy(model, splits.x_test, splits.y_test)
    predictions = predict_logits(model, splits.x_test).argmax(axis=1)
    result = metrics.classification_metrics(splits.y_test, predictions, splits.class_names)
    log(metrics.report(splits.y_test, predictions, splits.class_names))
    out = {**info, "data_files": data_files(splits), "test_accuracy": test_accuracy, "test_loss": test_loss,
           "per_class": result["per_class"], "macro_avg": result["macro_avg"],
           "weighted_avg": result["weighted_avg"], "class_names": list(splits.class_names),
           "confusion_matrix": result["confusion_matrix"],
           "most_confused": metrics.most_confused_pairs(result["confusion_matrix"], splits.class_names)}
    if tta_flip:
        flip_predictions = flip_averaged_probabilities(model, splits.x_test).argmax(axis=1)
        out["test_accuracy_flip_tta"] = float(np.mean(flip_predictions == splits.y_test))
        log(f"test accuracy {test_accuracy:.4f} plain, {out['test_accuracy_flip_tta']:.4f} "
            "averaged with the left-right mirror image (--tta-flip)")
    if history and history.get("epoch"):
        write_history_csv(run_dir / "history.csv", history)
        _save_figure(plots.plot_curves(history), run_dir / "curves.png")
    _save_figure(plots.plot_confusion_matrix(result["confusion_matrix"], splits.class_names),
                 run_dir / "confusion_matrix.png")
    # The first test images, then mistakes, so that the grid always shows some errors.
    mistakes = np.flatnonzero(predictions != splits.y_test)
    first = np.arange(min(SAMPLE_COUNT - 8, len(predictions)))
    shown = np.concatenate([first, mistakes[~np.isin(mistakes, first)][:SAMPLE_COUNT - len(first)]])
    images = display_images(splits.x_test[shown], splits.mean, splits.std)
    _save_figure(plots.plot_samples(images, splits.y_test[shown], predictions[shown], splits.class_names),
                 run_dir / "samples.png")
    write_json(run_dir / METRICS_FILE, out)  # last: it marks the reports complete
    return out
