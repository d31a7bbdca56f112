"""A residual network on real data, and what catches a broken skip connection.

The floor: resnet8 on 4,500 real Fashion-MNIST training images (``fashion_subset``), two
epochs of SGD (lr 0.05, momentum 0.9, cosine schedule, batch 64), seed 0, scored on the
first 5,000 test images, with the last BatchNorm of each block's main path starting at
gamma = 0 (Goyal et al., 2017, "Accurate, Large Minibatch SGD", Section 5.1; torchvision's
``zero_init_residual``): each block then starts as its shortcut alone, so the layers before
it learn only through the shortcut's gradient. Measured 2026-12-02: 0.609 with the fused
block (0.608 unfused); with the shortcut's gradient dropped at the block's input (``dx`` =
the main path's alone) 0.497 (three epochs: 0.669 against 0.567). The floor, 0.55, lies
between them, so the test runs both and asserts each side.

With the usual initialisation (gamma = 1) two epochs do not separate the bug (0.765 correct,
0.767 broken, Adam 2e-3): the main paths carry enough gradient in a three-block network.
The float64 gradient check below catches it in any setting: the block's input gradient is
then off by a relative error of order 1, where a correct block is below 1e-6.
"""
from __future__ import annotations

import numpy as np

import scratchcnn.nn.layers.residual as residual_module
from scratchcnn.engine.training import Trainer
from scratchcnn.nn.gradcheck import check_layer
from scratchcnn.nn.layers import basic_block
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.optimizers import SGD
from scratchcnn.nn.presets import build_model

TEST_IMAGES, FLOOR = 5000, 0.55


def backward_without_the_shortcut(self, dout):
    """The bug: the block's input gradient is the main path's alone (the shortcut still learns)."""
    out = self._cache.pop("out")
    d = self.K.relu_backward(dout, out)
    dx = self._path_backward(self.steps, d, self.requires_input_grad)
    if self.shortcut:
        self._path_backward(self.shortcut, d, False)
    return dx


def _short_run(d, fuse):
    """resnet8, gamma = 0 at each block's end, two epochs of SGD: test accuracy on TEST_IMAGES."""
    layers = build_model("resnet8", d.input_shape, 10, seed=0, backend="cpu").layers
    model = Sequential(layers, input_shape=d.input_shape, seed=0, backend="cpu", fuse=fuse)
    model.build(d.input_shape)
    for layer in model.layers:
        if isinstance(layer, residual_module.Residual):
            layer.main[-1].params["gamma"][...] = 0
    model.compile(SGD(0.05, momentum=0.9), SoftmaxCrossEntropy())
    Trainer(model, batch_size=64, seed=0, base_lr=0.05, lr_schedule="cosine", progress=False,
            log=lambda _: None).fit(d.x_train, d.y_train, 2)
    return model.evaluate(d.x_test[:TEST_IMAGES], d.y_test[:TEST_IMAGES])[1]


def test_resnet8_beats_the_floor_that_a_dropped_shortcut_gradient_misses(fashion_subset, monkeypatch):
    accuracy = _short_run(fashion_subset, fuse=True)  # the CPU plan: each block ends in ConvBNAddReLU
    assert accuracy >= FLOOR, accuracy
    # The broken backward is the layer's own, so this run goes layer by layer.
    monkeypatch.setattr(residual_module.Residual, "backward", backward_without_the_shortcut)
    broken = _short_run(fashion_subset, fuse=False)
    assert broken < FLOOR, broken


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
