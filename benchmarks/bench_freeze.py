"""Time saved by freezing layers: a training step of the default network with its first layers frozen.

Backward stops at the first trainable layer (``Sequential.backward``), so freezing the two
convolution blocks skips their whole backward pass (conv2's weight and input GEMMs, col2im,
the pool and ReLU backward, conv1's weight GEMM) and their Adam updates.

    python -m pytest benchmarks/bench_freeze.py --benchmark-enable    # pytest-benchmark, per variant
    python benchmarks/bench_freeze.py [--rounds 15 --steps 10]       # interleaved rounds, README figures

The script alternates the variants round by round in one process (so a change of
background load hits them alike) and prints the median step and the saving.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: find workloads.py

import workloads  # noqa: E402
from scratchcnn.engine.profiling import time_calls, train_step  # noqa: E402

# 0: everything trains; 4: conv1 block and conv2 frozen; 6: both convolution blocks frozen.
VARIANTS = {"none": 0, "conv1 block + conv2": 4, "both conv blocks": 6}


def frozen_model(backend: str, frozen: int):
    model = workloads.default_model(backend)
    return model.freeze(frozen) if frozen else model


@pytest.mark.parametrize("frozen", sorted(VARIANTS.values()))
def test_train_step_frozen(benchmark, frozen):
    model = frozen_model("cpu", frozen)
    x, y = (model.K.asarray(a) for a in workloads.default_batch())
    stats = model.K.zeros((2,), np.float64)
    benchmark.extra_info["frozen_layers"] = frozen
    benchmark(train_step, model, x, y, stats)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cpu")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    args = p.parse_args(argv)
    models = {name: frozen_model(args.backend, n) for name, n in VARIANTS.items()}
    batches = {name: [m.K.asarray(a) for a in workloads.default_batch()] for name, m in models.items()}
    times = {name: [] for name in models}
    print(f"load average before: {os.getloadavg()}")
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for name in order:
            x, y = batches[name]
            times[name].extend(time_calls(lambda: train_step(models[name], x, y), args.steps, warmup=2))
    print(f"load average after: {os.getloadavg()}")
    base = np.median(times["none"])
    print(f"| frozen layers | median step (ms) | images/s | time saved |\n| --- | ---: | ---: | ---: |")
    for name, t in times.items():
        m = np.median(t)
        print(f"| {name} ({VARIANTS[name]}) | {1e3 * m:.2f} | {workloads.BATCH / m:,.0f} | {1 - m / base:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
