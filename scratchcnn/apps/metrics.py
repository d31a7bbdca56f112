"""Test-set metrics, computed by scikit-learn."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix,
                             precision_recall_fscore_support)

__all__ = ["classification_metrics", "report", "most_confused_pairs"]


def classification_metrics(y_true, y_pred, class_names) -> dict:
    """Accuracy, per-class precision / recall / F1 / support, macro and weighted averages, confusion matrix.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (N,)
    class_names : list of str, one per class index

    Returns
    -------
    dict with ``accuracy``, ``per_class`` (a list of dicts with ``class``,
    ``precision``, ``recall``, ``f1``, ``support``), ``macro_avg``, ``weighted_avg``
    and ``confusion_matrix`` (rows: true class, columns: predicted class).
    """
    labels = np.arange(len(class_names))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = [{"class": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                  "support": int(s[i])} for i, name in enumerate(class_names)]
    averages = {}
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                        zero_division=0)
        averages[f"{average}_avg"] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "per_class": per_class, **averages,
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def report(y_true, y_pred, class_names) -> str:
    """scikit-learn's text classification report, four decimals."""
    return classification_report(y_true, y_pred, labels=np.arange(len(class_names)),
                                 target_names=list(class_names), digits=4, zero_division=0)


def most_confused_pairs(confusion, class_names, top: int = 5) -> list[tuple[str, str, int]]:
    """The ``top`` off-diagonal cells of a confusion matrix: (true class, predicted class, count)."""
    cm = np.array(confusion)
    np.fill_diagonal(cm, 0)
    order = np.argsort(cm, axis=None)[::-1][:top]
    return [(class_names[i], class_names[j], int(cm[i, j])) for i, j in zip(*np.unravel_index(order, cm.shape))
            if cm[i, j] > 0]
