"""Figures of a run, drawn with matplotlib.

The functions return Figures and leave the backend alone, so they display inline in a
notebook; with no screen, matplotlib picks its Agg backend by itself and ``save`` writes PNGs.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

__all__ = ["plot_curves", "plot_confusion_matrix", "plot_samples", "plot_filters", "plot_feature_maps",
           "save"]


def save(fig, path) -> None:
    """Save ``fig`` as PNG (dpi 120) to a path or binary file object, and close it."""
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)


def close(fig) -> None:
    """Close ``fig`` (free its memory); closing twice is harmless."""
    plt.close(fig)


def plot_curves(history: dict):
    """Loss and accuracy per epoch, training vs validation; returns the Figure."""
    epochs = history["epoch"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "loss", "Loss (cross-entropy)"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, history[key], "o-", label="train")
        if not np.all(np.isnan(np.asarray(history[f"val_{key}"], float))):
            ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(confusion, class_names, title="Confusion matrix (test set)"):
    """The confusion matrix with counts, rows true and columns predicted; returns the Figure."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ConfusionMatrixDisplay(np.asarray(confusion), display_labels=list(class_names)).plot(
        ax=ax, cmap="Blues", xticks_rotation=45, colorbar=False, values_format="d")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_samples(images, y_true, y_pred, class_names, columns: int = 8,
                 title="Test images: predicted class (mistakes in red, with the true class)"):
    """A grid of images titled with the predicted class; mistakes in red, framed, with the true class.

    images : (N, H, W) grey levels (drawn light on dark as dark on light, ``gray_r``) or
    (N, H, W, 3) RGB in [0, 1] (drawn as they are); y_true, y_pred : (N,) int class
    indices. Returns the Figure.
    """
    n = len(images)
    rows = int(np.ceil(n / columns))
    # 2.1 inches a row leaves room for the two-line title of a mistake above each image.
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.1 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, img, t, p in zip(np.ravel(axes), images, y_true, y_pred):
        wrong = t != p
        ax.imshow(img, cmap="gray_r" if img.ndim == 2 else None)
        ax.set_title(f"{class_names[p]}" + (f"\n(true {class_names[t]})" if wrong else ""),
                     fontsize=7, color="red" if wrong else "black")
        if wrong:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_filters(weights, columns: int = 8, title="First-layer filters"):
    """Each filter of a (C_out, 1, kH, kW) weight array as a small diverging image; returns the Figure."""
    w = np.asarray(weights)[:, 0]
    rows = int(np.ceil(len(w) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows))
    limit = np.abs(w).max()
    for ax in np.ravel(axes):
        ax.axis("off")
    for i, (ax, f) in enumerate(zip(np.ravel(axes), w)):
        ax.imshow(f, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_feature_maps(maps, columns: int = 8, title="Feature maps"):
    """The channels of one image's activation (C, H, W) as a grid; returns the Figure."""
    maps = np.asarray(maps)
    rows = int(np.ceil(len(maps) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for i, (ax, m) in enumerate(zip(np.ravel(axes), maps)):
        ax.imshow(m, cmap="viridis")
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
