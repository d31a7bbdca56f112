"""Batch normalisation on real data: it trains a network, its running statistics serve inference."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kernels.numba_cpu
import scratchcnn.nn.layers.batchnorm as bn_module
from scratchcnn.data import load_dataset
from scratchcnn.nn.layers import BatchNorm1D, BatchNorm2D
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.files.serialization import load_model, save_model
from scratchcnn.engine.training import Trainer

# vgg-small (four BatchNorm2D and one BatchNorm1D) on 3,000 real Fashion-MNIST images (2,700 after
# the validation split), one epoch, Adam 1e-3, seed 0: 0.783 accuracy on the first 2,000 test images,
# loss 0.63. With a batch-norm backward that forgets the batch statistics' own dependence on the
# input (the most common mistake: dx = gamma * inv_std * dout) in every BN layer the same run reaches
# 0.381, loss 2.09 (0.428, loss 2.72, with it in BatchNorm1D alone). 5,000 images and the whole test
# set gave 0.804 against 0.512 at twice the run time.
LIMIT, TEST, FLOOR, LOSS_CEILING = 3000, 2000, 0.75, 0.72


@pytest.fixture(scope="module")
def subset(data_dir):
    return load_dataset("fashion", data_dir, train_limit=LIMIT, val_fraction=0.1, seed=0, progress=False)


def train_vgg(subset):
    d = subset
    model = build_model("vgg-small", d.input_shape, 10, seed=0, backend="cpu")
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    Trainer(model, batch_size=64, seed=0, progress=False, log=lambda _: None).fit(
        d.x_train, d.y_train, 1, (d.x_val, d.y_val))
    return model


@pytest.fixture(scope="module")
def trained(subset):
    return train_vgg(subset)


def test_batchnorm_network_beats_the_floor(trained, subset):
    loss, accuracy = trained.evaluate(subset.x_test[:TEST], subset.y_test[:TEST])
    assert accuracy >= FLOOR and loss <= LOSS_CEILING, (accuracy, loss)


def test_the_floor_catches_a_wrong_batchnorm_backward(subset, monkeypatch):
    def naive_backward(self, dout):
        x_hat, inv_std = self._cache.pop("x_hat"), self._cache.pop("inv_std")
        axes = (0, 2, 3) if dout.ndim == 4 else (0,)
        shape = (1, -1, 1, 1) if dout.ndim == 4 else (1, -1)
        self.grads["beta"][...] = dout.sum(axis=axes)
        self.grads["gamma"][...] = (dout * x_hat).sum(axis=axes)
        return (dout * (self.params["gamma"] * inv_std).reshape(shape)).astype(dout.dtype)

    # The cpu backend runs each Conv2D-BatchNorm2D-ReLU as one fused step, whose BN backward is the
    # per-channel map of batchnorm_backward_affine: the same mistake there is dz = gamma * inv_std * g.
    exact_affine = kernels.numba_cpu.batchnorm_backward_affine

    def naive_affine(sums, count, gamma, mean, inv_std):
        k, z_scale, shift, _ = exact_affine(sums, count, gamma, mean, inv_std)
        return k, np.zeros_like(z_scale), np.zeros_like(shift), k.astype(np.float64) * sums[0]

    monkeypatch.setattr(bn_module._BatchNorm, "backward", naive_backward)
    monkeypatch.setattr(kernels.numba_cpu, "batchnorm_backward_affine", naive_affine)
    loss, accuracy = train_vgg(subset).evaluate(subset.x_test[:TEST], subset.y_test[:TEST])
    assert accuracy < FLOOR - 0.1 and loss > LOSS_CEILING + 0.3, (accuracy, loss)


def test_running_statistics_track_the_training_batches(trained, subset):
    """After an epoch the running mean/variance of the first BN layer match its input's statistics."""
    first_bn = next(layer for layer in trained.layers if isinstance(layer, BatchNorm2D))
    conv = trained.layers[0]
    x = subset.x_train[:2000]
    z = np.concatenate([np.array(conv.forward(x[i:i + 500], training=False)) for i in range(0, 2000, 500)])
    mean, var = z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))
    running_mean = np.array(first_bn.buffers["running_mean"])
    running_var = np.array(first_bn.buffers["running_var"])
    # After the epoch's 43 updates (momentum 0.1) 0.9**43 = 1.1% of the initial values (mean 0, variance 1)
    # is left: more than the smallest channel variances here, so it is taken out first.
    left = (1 - first_bn.momentum) ** math.ceil(len(subset.y_train) / 64)
    # An exponential average over the last ~10 batches of a still-moving network: close, not equal.
    np.testing.assert_allclose(running_mean, (1 - left) * mean, atol=0.15 * np.sqrt(var).max())
    np.testing.assert_allclose(running_var - left, (1 - left) * var, rtol=0.35)
    assert not np.allclose(running_var, 1.0)  # moved away from the initial value


def test_inference_does_not_depend_on_the_rest_of_the_batch(trained, subset):
    x = subset.x_test[:100]
    alone = trained.predict(x[:7])
    together = trained.predict(x)[:7]
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)


def test_batchnorm_buffers_are_saved_and_loaded(trained, subset, tmp_path):
    save_model(tmp_path / "m.npz", trained, subset.class_names,
               {"mean": subset.mean, "std": subset.std, "scale": 255.0})
    loaded, _ = load_model(tmp_path / "m.npz", backend="numpy")
    for a, b in zip(trained.layers, loaded.layers):
        if isinstance(a, (BatchNorm1D, BatchNorm2D)):
            for key in ("running_mean", "running_var"):
                np.testing.assert_array_equal(np.array(a.buffers[key]), np.array(b.buffers[key]))
    x = subset.x_test[:50]
    np.testing.assert_allclose(loaded.predict(x), trained.predict(x), rtol=1e-4, atol=1e-5)
