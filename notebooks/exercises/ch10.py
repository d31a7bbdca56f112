"""Checks of notebook 10's exercises: a saliency map through the layers' backward, an occlusion map."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect_close
from scratchcnn.engine import explain
from scratchcnn.nn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from scratchcnn.nn.model import Sequential


def _small_model():
    """A seeded, untrained CNN on 12x12 images in float64 on the NumPy reference, and two images."""
    model = Sequential([Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(4 * 5 * 5, 10)],
                       input_shape=(1, 12, 12), seed=3, backend="numpy").to("numpy", np.float64)
    x = np.random.default_rng(16).standard_normal((2, 1, 12, 12))
    return model, x


@checker("10.1")
def saliency(answer):
    """``answer(model, x, target) -> d logit[n, target[n]] / d x`` against ``scratchcnn.engine.explain.saliency``."""
    model, x = _small_model()
    target = np.array([3, 7])
    want = explain.saliency(model, x, target)[0]
    got = answer(model, x.copy(), target)
    expect_close("saliency", got, want, rtol=1e-8, atol=1e-10,
                 where="the gradient of the target's *logit* (one-hot dout on the logits), for each image")
    expect_close("model.layers[0].requires_input_grad", model.layers[0].requires_input_grad, False,
                 where="leave the model as you found it")
    return "the gradient of each image's target logit matches scratchcnn.engine.explain.saliency"


def _occlusion(model, x, target, patch):
    """Brute force: the drop of the target logit when each patch x patch square is set to 0."""
    base = explain.trace(model, x[None]).logits[0, target]
    h, w = x.shape[1:]
    drop = np.zeros((h // patch, w // patch))
    for i in range(h // patch):
        for j in range(w // patch):
            occluded = x.copy()
            occluded[:, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch] = 0.0
            drop[i, j] = base - explain.trace(model, occluded[None]).logits[0, target]
    return drop


@checker("10.2")
def occlusion_map(answer):
    """``answer(model, x, target, patch) -> (H//patch, W//patch)`` logit drops, against a brute force."""
    model, x = _small_model()
    for patch in (3, 4):
        want = _occlusion(model, x[0], 5, patch)
        got = answer(model, x[0].copy(), 5, patch)
        if got is not None and np.shape(got) == want.shape and np.allclose(got, -want, atol=1e-9):
            raise ExerciseFailed(f"patch {patch}: your map has the opposite sign; it should be the *drop* of the "
                                 "logit, logit(original) - logit(occluded), so that important regions are positive")
        expect_close("occlusion map", got, want, rtol=1e-8, atol=1e-10,
                     where=f"patch {patch}: logit(original) - logit(with the square set to 0)")
    return "the logit drops match occluding each square in turn (patches of 3 and 4 pixels)"
