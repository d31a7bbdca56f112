"""A whole training step and inference of the default network at batch 64: numpy vs cpu vs PyTorch CPU.

Each contender runs in its own worker process (``worker.py``: why) with the same
thread count, ``numba.get_num_threads()`` of this process; PyTorch is skipped
when not installed (``pip install -e '.[bench]'``). Before any timing, each
contender must reproduce the NumPy reference's logits and gradients on the same
batch, which proves it runs the same network with the same weights.

    python -m pytest benchmarks/bench_train_step.py --benchmark-enable

``benchmark.extra_info`` holds images/s (from the worker's per-step times) and the
terminal summary prints them side by side with ratios; ``compare.py`` interleaves
the contenders round by round for the figures in README.md.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import workloads
from worker import CONTENDERS, Worker

STEPS_PER_ROUND = 10
ROUNDS = 15
RTOL = 1e-4  # float32 sums of up to 43,264 terms (conv1's weight gradient), relative to the largest entry


@pytest.fixture(scope="module")
def reference():
    return workloads.reference_check(workloads.default_model("numpy"), *workloads.default_batch())


@pytest.fixture(scope="module")
def workers(reference, tmp_path_factory):
    """One worker per contender, started on first use and shared by this module's benchmarks.

    A new worker must first reproduce the reference (before any step changes its weights).
    """
    started: dict[str, Worker] = {}

    def get(contender):
        if contender not in started:
            worker = started[contender] = Worker(contender, numba.get_num_threads())
            check = worker.check(tmp_path_factory.mktemp(contender) / "check.npz")
            assert_same_network(check, reference, contender)
        return started[contender]

    yield get
    for worker in started.values():
        worker.close()


def assert_same_network(got: dict, want: dict, who: str) -> None:
    """Logits, loss and every gradient equal the reference within float32 tolerance."""
    assert sorted(got) == sorted(want), who
    for key, ref in want.items():
        scale = max(float(np.max(np.abs(ref))), 1e-12)
        np.testing.assert_allclose(got[key], ref, rtol=RTOL, atol=RTOL * scale, err_msg=f"{who}: {key}")


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("contender", CONTENDERS)
def test_step(benchmark, workers, throughput, contender, mode):
    if contender == "torch":
        pytest.importorskip("torch")
    worker = workers(contender)  # checked against the reference when started

    steps = 1 if benchmark.disabled else STEPS_PER_ROUND
    seconds: list[float] = []
    benchmark.group = f"{mode} step, default network, batch {workloads.BATCH}"
    benchmark.pedantic(lambda: seconds.extend(worker.run(mode, steps)), rounds=ROUNDS, warmup_rounds=1)
    assert all(s > 0 for s in seconds)
    # pedantic's warm-up round also appends: drop it, keep the timed rounds.
    timed = seconds[-steps * (1 if benchmark.disabled else ROUNDS):]
    rate = workloads.BATCH / float(np.median(timed))
    benchmark.extra_info.update(images_per_second=rate, median_step_ms=1e3 * float(np.median(timed)),
                                threads=worker.threads)
    throughput[(mode, contender)] = rate
