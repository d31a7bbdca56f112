"""A residual network on real data, and what catches a broken skip connection.

resnet8 on 4,500 real Fashion-MNIST training images (``fashion_subset``), two epochs of
Adam (lr 2e-3, cosine schedule, batch 64), seed 0: 0.765 accuracy on the first 5,000 test
images (measured 2026-12-02). The floor is 0.72.

A backward that drops the shortcut's gradient at the block's input (``dx`` = the main
path's alone) does NOT fall below any such floor: measured on the same run, 0.767 (and with
SGD 0.05, momentum 0.9, cosine: 0.754 correct against 0.754 broken; without a schedule
0.724 against 0.677, within the end-of-run noise of a constant learning rate). Two epochs
of a three-block network train nearly as well with the main paths' gradient alone. What
does catch that bug is the float64 gradient check of the block, below: its input gradient
is then off by a relative error of order 1, where a correct block is below 1e-6.
"""
from __future__ import annotations

import numpy as np

import scratchcnn.nn.layers.residual as residual_module
from scratchcnn.engine.training import Trainer
from scratchcnn.nn.gradcheck import check_layer
from scratchcnn.nn.layers import basic_block
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model

TEST_IMAGES, FLOOR = 5000, 0.72


def backward_without_the_shortcut(self, dout):
    """The bug: the block's input gradient is the main path's alone (the shortcut still learns)."""
    out = self._cache.pop("out")
    d = self.K.relu_backward(dout, out)
    dx = self._path_backward(self.steps, d, self.requires_input_grad)
    if self.shortcut:
        self._path_backward(self.shortcut, d, False)
    return dx


def test_resnet8_beats_the_floor_on_real_fashion_mnist(fashion_subset):
    d = fashion_subset
    model = build_model("resnet8", d.input_shape, 10, seed=0, backend="cpu")
    model.compile(Adam(2e-3), SoftmaxCrossEntropy())
    Trainer(model, batch_size=64, seed=0, base_lr=2e-3, lr_schedule="cosine", progress=False,
            log=lambda _: None).fit(d.x_train, d.y_train, 2)
    loss, accuracy = model.evaluate(d.x_test[:TEST_IMAGES], d.y_test[:TEST_IMAGES])
    assert accuracy >= FLOOR, (accuracy, loss)


def test_the_gradient_check_catches_a_shortcut_whose_gradient_is_dropped(monkeypatch, rng):
    x = rng.standard_normal((2, 3, 5, 5))
    for block in (basic_block(3, 3), basic_block(3, 4, stride=2)):  # identity, then projection
        block.reset_parameters(rng)
        errors = check_layer(block, x, rng)
        assert max(errors.values()) < 1e-6, errors
    monkeypatch.setattr(residual_module.Residual, "backward", backward_without_the_shortcut)
    for block in (basic_block(3, 3), basic_block(3, 4, stride=2)):
        block.reset_parameters(rng)
        errors = check_layer(block, x, rng)
        assert errors["x"] > 0.1, errors  # the input gradient is wrong
        assert max(v for k, v in errors.items() if k != "x") < 1e-6  # the parameters' are still right
