"""Checks of notebook 10's exercises: a saliency map through the layers' backward, an occlusion map."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from scratchcnn.engine import explain
from scratchcnn.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from scratchcnn.nn.model import Sequential

FORBID_10_1 = {"scratchcnn.engine.explain": explain}
FORBID_10_2 = {"explain.saliency": explain.saliency, "explain.trace_with_saliency": explain.trace_with_saliency}


def _small_model():
    """A seeded, untrained CNN on 12x12 images, with dropout, in float64 on the NumPy reference, and two images."""
    model = Sequential([Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.5), Dense(4 * 5 * 5, 10)],
                       input_shape=(1, 12, 12), seed=3, backend="numpy").to("numpy", np.float64)
    x = np.random.default_rng(16).standard_normal((2, 1, 12, 12))
    return model, x


def _record_training_flags(model):
    """Make every layer's forward note its ``training`` argument; returns the list of flags seen."""
    flags = []
    for layer in model.layers:
        def forward(x, training=True, _original=layer.forward):
            flags.append(bool(training))
            return _original(x, training=training)
        layer.forward = forward  # an instance attribute: the class's forward is untouched
    return flags


@checker("10.1")
def saliency(answer):
    """``answer(model, x, target) -> d logit[n, target[n]] / d x`` against ``scratchcnn.engine.explain.saliency``,
    on a model with dropout (so the forward pass must be in inference mode)."""
    model, x = _small_model()
    target = np.array([3, 7])
    want = explain.saliency(model, x, target)[0]
    flags = _record_training_flags(model)
    got = run_answer(answer, model, x.copy(), target, forbid=FORBID_10_1)
    expect(not any(flags), "your forward pass ran in training mode (dropout dropped units at random); a saliency "
                           "map explains the network as it predicts: forward(x, training=False)")
    expect(np.shape(got) == x.shape, f"saliency: shape {np.shape(got)}, expected {x.shape} (one gradient per pixel)")
    expect_close("saliency", got, want, rtol=1e-8, atol=1e-10,
                 where="the gradient of the target's *logit* (one-hot dout on the logits, not on the probabilities), "
                       "for each image")
    expect(model.layers[0].requires_input_grad is False,
           "model.layers[0].requires_input_grad is left True: leave the model as you found it (restore it)")
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
        got = run_answer(answer, model, x[0].copy(), 5, patch, forbid=FORBID_10_2)
        if got is not None and np.shape(got) == want.shape and np.allclose(got, -want, atol=1e-9):
            raise ExerciseFailed(f"patch {patch}: your map has the opposite sign; it should be the *drop* of the "
                                 "logit, logit(original) - logit(occluded), so that important regions are positive")
        if got is not None and np.shape(got) == want.shape and np.allclose(got, want.T, atol=1e-9):
            raise ExerciseFailed(f"patch {patch}: your map is transposed: entry (i, j) is the square at rows "
                                 f"i*{patch}.. and columns j*{patch}..")
        expect_close("occlusion map", got, want, rtol=1e-8, atol=1e-10,
                     where=f"patch {patch}: logit(original) - logit(with the square set to 0)")
    return "the logit drops match occluding each square in turn (patches of 3 and 4 pixels)"
