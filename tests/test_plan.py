"""The execution plan: fused steps compute what the layers compute one by one, and summary shows the plan."""
from __future__ import annotations

import numpy as np
import pytest

import kernels
from scratchcnn.nn import plan as plan_module
from scratchcnn.nn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.optimizers import Adam
from scratchcnn.engine.profiling import synthetic_batch
from tests.conftest import host_backends

SHAPE = (1, 16, 16)


def _model(backend, fuse, dtype=np.float32):
    """Every fusion rule fires: Conv-BN-ReLU; Conv-BN-ReLU-Pool with overlapping windows (3x3, stride 2)
    (no convolution bias before BN: its gradient is zero up to rounding, which Adam would amplify into
    different steps; tests/test_conv_bn.py checks that gradient); a Conv-ReLU-Pool likewise without a bias and with
    overlapping windows, a padded one with a bias; then a dense head with dropout."""
    layers = [Conv2D(1, 6, 3, padding=1, bias=False), BatchNorm2D(6), ReLU(),
              Conv2D(6, 8, 3, padding=1, bias=False), BatchNorm2D(8), ReLU(), MaxPool2D(3, stride=2),
              Conv2D(8, 8, 3, padding=1, bias=False), ReLU(), MaxPool2D(3, stride=2),
              Conv2D(8, 8, 3, padding=1), ReLU(), MaxPool2D(2),
              Flatten(), Dense(8, 16), ReLU(), Dropout(0.25), Dense(16, 10)]
    model = Sequential(layers, seed=3, fuse=fuse)
    model.compile(Adam(1e-2), SoftmaxCrossEntropy())
    return model.build(SHAPE, backend=backend, dtype=dtype)


def test_every_fusion_rule_fires():
    model = _model("numpy", fuse=True)
    fired = {type(step) for step in model.plan if isinstance(step, plan_module.FusedStep)}
    assert fired == {rule.step for rule in plan_module.FUSION_RULES}
    names = [type(step).__name__ for step in model.plan]
    assert names.count("ConvReLUPool") == 2 and names.count("ConvBNReLU") == 2
    unfused = _model("numpy", fuse=False)
    assert unfused.plan == unfused.layers


@pytest.mark.parametrize("backend", host_backends())
def test_fused_and_unfused_plans_compute_the_same_outputs_gradients_and_training(backend):
    fused, unfused = _model(backend, True), _model(backend, False)
    K = kernels.get(backend)
    x, y = synthetic_batch(SHAPE, 16, 10, seed=1)
    close = dict(rtol=1e-5, atol=1e-6)
    for training in (False, True):
        a = K.to_numpy(fused.forward(K.asarray(x), training=training)).copy()
        b = K.to_numpy(unfused.forward(K.asarray(x), training=training)).copy()
        np.testing.assert_allclose(a, b, **close)
    for model in (fused, unfused):
        model.requires_input_grad = True
        model.loss.forward(model.forward(K.asarray(x)), K.asarray(y))
    dx_fused = K.to_numpy(fused.backward(fused.loss.backward())).copy()
    dx_unfused = K.to_numpy(unfused.backward(unfused.loss.backward())).copy()
    np.testing.assert_allclose(dx_fused, dx_unfused, **close)
    grads = {key: K.to_numpy(g).copy() for key, _, g in fused.parameters()}
    for key, _, g in unfused.parameters():
        np.testing.assert_allclose(grads[key], K.to_numpy(g), err_msg=key, **close)
    for step in range(3):
        x, y = synthetic_batch(SHAPE, 16, 10, seed=10 + step)
        for model in (fused, unfused):
            model.train_step(K.asarray(x), K.asarray(y))
    after = fused.named_arrays()
    for key, value in unfused.named_arrays().items():
        np.testing.assert_allclose(after[key], value, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("backend", host_backends())
def test_a_residual_blocks_main_path_is_planned_and_computes_the_same(backend):
    """resnet8's blocks fuse their Conv-BN-ReLU (stride 1 and 2) and their end (last Conv-BN, shortcut, sum,
    ReLU) on the CPU; training and inference outputs, gradients and running statistics agree."""
    from scratchcnn.nn.presets import build_model

    K, shape = kernels.get(backend), (1, 12, 12)
    models = [build_model("resnet8", shape, 10, seed=0, backend=backend) for _ in range(2)]
    models[1].fuse = False
    models[1].build(shape, backend=backend)
    fused, unfused = models
    block = fused.layers[4]  # the first strided block: Conv3x3 stride 2 - BN - ReLU fused where the backend can
    fuses = bool(K.CONV_BN and K.FUSE_BY_DEFAULT)
    assert isinstance(block.steps[0], plan_module.ConvBNReLU) == fuses
    for i, projection in ((3, False), (4, True)):  # an identity and a projection shortcut
        tail = fused.layers[i].tail
        assert isinstance(tail, plan_module.ConvBNAddReLU) == fuses
        assert not fuses or (tail.projection is not None) == projection
    assert unfused.layers[4].steps == unfused.layers[4].main and unfused.layers[4].tail is None
    if fuses:  # summary shows the block's own plan, its end as one step
        assert "main.conv2d_1 + main.batchnorm2d_1 + shortcut.conv2d_0 + shortcut.batchnorm2d_0  fused: " \
               "ConvBNAddReLU" in fused.summary()
    x, y = synthetic_batch(shape, 8, 10, seed=2)
    for model in models:
        model.compile(Adam(1e-2), SoftmaxCrossEntropy())
        model.requires_input_grad = True
    outs = [K.to_numpy(m.loss.forward(m.forward(K.asarray(x)), K.asarray(y))) for m in models]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5)
    dxs = [K.to_numpy(m.backward(m.loss.backward())).copy() for m in models]
    np.testing.assert_allclose(dxs[0], dxs[1], rtol=1e-4, atol=1e-6)
    grads = {key: K.to_numpy(g).copy() for key, _, g in fused.parameters()}
    for key, _, g in unfused.parameters():
        np.testing.assert_allclose(grads[key], K.to_numpy(g), rtol=1e-4, atol=1e-5, err_msg=key)
    arrays = fused.named_arrays()
    for key, value in unfused.named_arrays().items():  # the running statistics took the same update
        np.testing.assert_allclose(K.to_numpy(arrays[key]), K.to_numpy(value), rtol=1e-5, atol=1e-6, err_msg=key)
    logits = [K.to_numpy(m.forward(K.asarray(x), training=False)).copy() for m in models]
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-4, atol=1e-5)


def test_summary_prints_the_plan_that_will_run():
    text = _model("numpy", fuse=True).summary()
    assert "conv2d_2 + relu_2 + maxpool2d_1" in text and "fused: ConvReLUPool" in text
    assert "conv2d_1 + batchnorm2d_1 + relu_1 + maxpool2d_0" in text and "fused: ConvBNReLU" in text
    assert "conv_relu_pool_forward" in text and "bn_relu_pool_forward" in text and "dense_0" in text
    text = _model("numpy", fuse=False).summary()
    assert "fused" not in text.split("Execution plan")[1].split("\n", 1)[1]


def test_unfused_runs_every_layers_own_forward(monkeypatch):
    calls = []
    original = ReLU.forward
    monkeypatch.setattr(ReLU, "forward", lambda self, x, training=True: calls.append(self.name) or
                        original(self, x, training))
    x, _ = synthetic_batch(SHAPE, 2, 10)
    _model("numpy", fuse=False).forward(x)
    assert calls == ["relu_0", "relu_1", "relu_2", "relu_3", "relu_4"]
    calls.clear()
    _model("numpy", fuse=True).forward(x)
    assert calls == ["relu_4"]  # the others run inside the fused steps
