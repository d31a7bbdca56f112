"""A warm start compiles nothing: a second process loads every Numba CPU kernel from the disk cache.

Two fresh processes run the same training work with ``NUMBA_CACHE_DIR`` set to
an empty temporary folder. The first must compile (proving the folder started
empty); the second must compile nothing and load every kernel dispatcher of
``kernels.numba_cpu`` (every module of the package) from the cache. Run time: about 10-25 s
on 2 cores, nearly all of it the first process compiling.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")
ROOT = Path(__file__).resolve().parents[1]

# The work of a short training run on the cpu backend, in float32: the default
# network warmed up (Sequential.warm_up), then through Trainer (fit with validation,
# evaluate, predict, which must then compile nothing more), the VGG-style
# preset for one SGD step (fused Conv-BN-ReLU, BatchNorm1D) and inference, resnet8 for one step and
# inference (residual blocks, global average pooling), a 3x3 pooling
# window forward and backward (overlapping windows), an unfused convolution's bias
# kernels, and batch normalisation layer by layer (training and inference-mode backward).
# Prints what Numba compiled and loaded.
CHILD = r"""
import json
import numpy as np
from numba.core.dispatcher import Dispatcher
from scratchcnn.engine.profiling import CompileLog

with CompileLog() as log:
    import kernels.numba_cpu as cpu
    from scratchcnn.nn.losses import SoftmaxCrossEntropy
    from scratchcnn.nn.optimizers import SGD, Adam
    from scratchcnn.nn.presets import build_model
    from scratchcnn.engine.profiling import synthetic_batch, train_step

    x, y = synthetic_batch((1, 8, 8), 12, 10, seed=0)
    model = build_model("classic", (1, 8, 8), 10, seed=0, backend="cpu")
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    announced = []
    warm_up_seconds = model.warm_up(8, log=announced.append)
    with CompileLog() as after_warm_up:
        model.fit(x, y, batch_size=8, epochs=1, validation_data=(x[:4], y[:4]), progress=False,
                  log=lambda s: None)
        model.evaluate(x, y)
        model.predict(x)
    vgg = build_model("vgg-small", (1, 8, 8), 10, seed=0, backend="cpu")
    vgg.compile(SGD(0.01, momentum=0.9), SoftmaxCrossEntropy())
    train_step(vgg, x, y)
    vgg.predict(x)  # the fused Conv-BN-ReLU step in inference mode (BN folded by the norm kernels)
    # A residual network: strided and 1x1 convolutions, global average pooling, the block's add (+ ReLU).
    res = build_model("resnet8", (1, 8, 8), 10, seed=0, backend="cpu")
    res.compile(SGD(0.01, momentum=0.9), SoftmaxCrossEntropy())
    train_step(res, x, y)
    res.predict(x)
    pooled, argmax = cpu.maxpool_forward(x, 3, 2)
    cpu.maxpool_backward(pooled, argmax, x.shape, 3, 2)
    y = cpu.bias_add_nchw(np.ones((4, 12 * 9), np.float32), np.ones(4, np.float32), 12)
    cpu.bias_grad_nchw(y.reshape(12, 4, 3, 3))
    # BatchNorm2D layer by layer (unfused), so the norm kernels compile too.
    c = np.ones(4, np.float32)
    out, x_hat, inv_std = cpu.batchnorm_forward(np.ones((2, 4, 3, 3), np.float32), c, c, c.copy(), c.copy(),
                                                0.1, 1e-5, True)
    cpu.batchnorm_backward(out, x_hat, inv_std, c, c.copy(), c.copy(), training=False)

import importlib, pkgutil
stats = {}
for info in pkgutil.iter_modules(cpu.__path__):
    module = importlib.import_module(f"kernels.numba_cpu.{info.name}")
    for name, obj in vars(module).items():
        if isinstance(obj, Dispatcher) and obj.targetoptions.get("inline") != "always":
            s = obj.stats
            stats[f"{module.__name__}.{name}"] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())]
print(json.dumps({"compiled": log.names, "stats": stats, "announced": announced,
                  "warm_up_seconds": warm_up_seconds, "after_warm_up": after_warm_up.names}))
"""


def run_child(cache_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_loads_every_kernel_from_the_cache(tmp_path):
    cold = run_child(tmp_path)
    # The cache folder started empty: the first process compiled the kernels and missed the cache.
    assert {"_im2col_core", "gemm", "_adam_core"} <= set(cold["compiled"])
    assert all(misses >= 1 for _, misses in cold["stats"].values()), cold["stats"]
    assert any(Path(tmp_path).rglob("*.nbi")), "no cache index written"
    # The warm-up compiled everything the run needed, said so in one line, and timed it apart.
    assert len(cold["announced"]) == 1 and "compiling the kernels of the cpu backend" in cold["announced"][0]
    assert cold["warm_up_seconds"] > 0 and cold["after_warm_up"] == [], cold["after_warm_up"]

    warm = run_child(tmp_path)
    assert warm["compiled"] == [], f"the warm process compiled {warm['compiled']}"
    assert warm["announced"] == [] and warm["warm_up_seconds"] == 0.0
    not_loaded = {name: hm for name, hm in warm["stats"].items() if hm[0] < 1 or hm[1] != 0}
    assert not not_loaded, f"[cache hits, misses] of kernels not loaded from the cache: {not_loaded}"
    assert set(warm["stats"]) == set(cold["stats"])
