"""Inverted dropout."""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.layers.base import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Zero each activation with probability ``p`` in training; identity at inference.

    Parameters
    ----------
    p : float in [0, 1)
        Drop probability.
    seed : int, optional
        Seed of the layer's mask stream (drawn by ``reset_parameters`` when the
        model is seeded). Mask ``k`` is a pure function of ``(seed, k)``, so every
        backend draws the same masks and a resumed run continues the same stream.

    Attributes
    ----------
    calls : int
        Number of training-mode forward passes so far, the counter of the next mask.

    Notes
    -----
    Kept activations are scaled by ``1/(1-p)`` during training so that their
    expectation matches inference (Srivastava et al., 2014, JMLR 15, Section 10);
    ``dx = dout * mask``.
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = int(np.random.default_rng().integers(2**62)) if seed is None else int(seed)
        self.calls = 0

    elementwise = True

    def onnx_nodes(self, x, out, weight, helper):
        return []  # the identity at inference: no node

    def fold_into(self, previous):
        return None  # the identity at inference: scratchcnn.nn.folding keeps it, the model ignores it

    def with_channel_affine(self, scale, shift):
        return None

    def explain_unit(self, x, out, image, channel, row, col):
        return None

    def reset_parameters(self, rng):
        self.seed = int(rng.integers(2**62))
        self.calls = 0

    def get_config(self):
        return {"p": self.p}

    def get_state(self):
        return {"seed": self.seed, "calls": self.calls}

    def set_state(self, state):
        self.seed, self.calls = int(state["seed"]), int(state["calls"])

    def forward(self, x, training=True):
        if not training or self.p == 0.0:
            self._cache = {"mask": None}
            return x
        out, mask = self.K.dropout_forward(x, self.p, self.seed, self.calls,
                                           out=self.workspace("out", x.shape, x.dtype),
                                           mask=self.workspace("mask", x.shape, x.dtype))
        self.calls += 1
        self._cache = {"mask": mask}
        return out

    def backward(self, dout):
        mask = self._cache.pop("mask")
        if mask is None:
            return dout
        return self.K.dropout_backward(dout, mask, out=self.workspace("dx", dout.shape, dout.dtype))
