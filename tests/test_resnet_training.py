"""A residual network on real data: a short resnet8 run clears a floor that a broken skip connection cannot."""
from __future__ import annotations

import pytest

import scratchcnn.nn.layers.residual as residual_module
from scratchcnn.engine.training import Trainer
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import SGD
from scratchcnn.nn.presets import build_model

# resnet8 on 4,500 real Fashion-MNIST training images (fashion_subset), two epochs of SGD
# (lr 0.05, momentum 0.9, batch 64), seed 0, scored on the first 5,000 test images:
# MEASURED_OK accuracy. The same run with a backward that drops the shortcut's gradient at the block's
# input (dx = the main path's alone, He et al.'s identity term missing) reaches MEASURED_BROKEN.
TEST_IMAGES, FLOOR = 5000, None


def train_resnet8(d):
    model = build_model("resnet8", d.input_shape, 10, seed=0, backend="cpu")
    model.compile(SGD(0.05, momentum=0.9), SoftmaxCrossEntropy())
    Trainer(model, batch_size=64, seed=0, progress=False, log=lambda _: None).fit(d.x_train, d.y_train, 2)
    return model.evaluate(d.x_test[:TEST_IMAGES], d.y_test[:TEST_IMAGES])


def test_resnet8_beats_the_floor(fashion_subset):
    loss, accuracy = train_resnet8(fashion_subset)
    assert accuracy >= FLOOR, (accuracy, loss)


def test_the_floor_catches_a_shortcut_whose_gradient_is_dropped(fashion_subset, monkeypatch):
    def backward_without_the_shortcut(self, dout):
        out = self._cache.pop("out")
        d = self.K.relu_backward(dout, out)
        dx = self._path_backward(self.steps, d, self.requires_input_grad)
        if self.shortcut:  # the projection still learns; only its (or the identity's) dx is lost
            self._path_backward(self.shortcut, d, False)
        return dx

    monkeypatch.setattr(residual_module.Residual, "backward", backward_without_the_shortcut)
    loss, accuracy = train_resnet8(fashion_subset)
    assert accuracy < FLOOR, (accuracy, loss)
