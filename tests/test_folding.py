"""Batch normalisation folded into the layer before it (BatchNorm2D.fold_into, scratchcnn.nn.folding)."""
from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.nn.losses import SoftmaxCrossEntropy


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_folded_batchnorm_gives_the_same_logits(backend, rng):
    from scratchcnn.nn.folding import fold_batchnorm
    from scratchcnn.nn.optimizers import Adam
    from scratchcnn.nn.presets import build_model

    model = build_model("vgg-small", (1, 28, 28), 10, seed=0, backend=backend)
    model.compile(Adam(1e-2), SoftmaxCrossEntropy())
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    for _ in range(3):  # move gamma, beta and the running statistics away from 1 and 0
        model.train_step(model.K.asarray(x), model.K.asarray(y))
    folded = fold_batchnorm(model)
    assert [type(layer).__name__ for layer in folded.layers].count("BatchNorm2D") == 0
    assert len(folded.layers) == len(model.layers) - 5
    want = np.array(model.K.to_numpy(model.forward(model.K.asarray(x), training=False)))
    got = np.array(folded.K.to_numpy(folded.forward(folded.K.asarray(x), training=False)))
    # float32 rounding of the folded weights and of a different summation order: a few ulps of the logits
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
