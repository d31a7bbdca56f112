"""A whole training step and inference of both presets at batch 64: numpy vs cpu vs PyTorch CPU.

Each contender runs in its own worker process (``worker.py``: why) with the same
thread count, ``numba.get_num_threads()`` of this process; PyTorch is skipped
when not installed (``pip install -e '.[bench]'``). Before any timing, each
contender must reproduce the NumPy reference's logits, gradients and batch-norm
running statistics on the same batch, which proves it runs the same network with
the same weights.

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
    """The NumPy reference's check of each network, computed on first use."""
    done: dict[str, dict] = {}

    def get(network):
        if network not in done:
            model = workloads.default_model("numpy", network=network)
            done[network] = workloads.reference_check(model, *workloads.default_batch())
        return done[network]

    return get


@pytest.fixture(scope="module")
def workers(reference, tmp_path_factory):
    """One worker per contender, started on first use and shared by this module's benchmarks.

    A network must first reproduce the reference in that worker (before any step changes its weights).
    """
    started: dict[str, Worker] = {}
    checked: set[tuple[str, str]] = set()

    def get(contender, network):
        if contender not in started:
            started[contender] = Worker(contender, numba.get_num_threads())
        worker = started[contender]
        if (contender, network) not in checked:
            check = worker.check(tmp_path_factory.mktemp(contender) / "check.npz", network)
            assert_same_network(check, reference(network), f"{contender} {network}")
            checked.add((contender, network))
        return worker

    yield get
    for worker in started.values():
        worker.close()


# vgg-small's gradients, normwise: max-pooling over batch-normalised values meets near-ties (two window
# entries within float32 rounding), and float32 rounding decides which one gets the gradient; BN's
# backward then spreads each flip over the channel. Measured against a float64 run of the reference
# (2026-11-30): numpy 3e-6, cpu 1.5e-3, PyTorch 2.0e-3; a wrong layer gives errors of order 1.
GRAD_NORM_RTOL = 1e-2


def assert_same_network(got: dict, want: dict, who: str) -> None:
    """Logits, loss, running statistics and every gradient equal the reference within float32 tolerance.

    Forward quantities (logits, loss, running statistics) and the classic network's gradients
    elementwise (``RTOL`` relative to the largest entry); gradients of a network with batch
    normalisation by the relative norm of the difference (``GRAD_NORM_RTOL``, see above).
    """
    assert sorted(got) == sorted(want), who
    has_bn = any(key.endswith(".running_mean") for key in want)
    for key, ref in want.items():
        if has_bn and key.endswith((".W", ".b", ".gamma", ".beta")):
            error = np.linalg.norm(got[key] - ref) / max(float(np.linalg.norm(ref)), 1e-30)
            assert error < GRAD_NORM_RTOL, f"{who}: {key}: relative error {error:.2e}"
            continue
        scale = max(float(np.max(np.abs(ref))), 1e-12)
        np.testing.assert_allclose(got[key], ref, rtol=RTOL, atol=RTOL * scale, err_msg=f"{who}: {key}")


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("network", workloads.NETWORKS)
def test_step(benchmark, workers, throughput, network, contender, mode):
    if contender == "torch":
        pytest.importorskip("torch")
    worker = workers(contender, network)  # checked against the reference on first use

    steps = 1 if benchmark.disabled else STEPS_PER_ROUND
    seconds: list[float] = []
    benchmark.group = f"{mode} step, {network}, batch {workloads.BATCH}"
    benchmark.pedantic(lambda: seconds.extend(worker.run(mode, steps, network)), rounds=ROUNDS,
                       warmup_rounds=1)
    assert all(s > 0 for s in seconds)
    # pedantic's warm-up round also appends: drop it, keep the timed rounds.
    timed = seconds[-steps * (1 if benchmark.disabled else ROUNDS):]
    rate = workloads.BATCH / float(np.median(timed))
    benchmark.extra_info.update(images_per_second=rate, median_step_ms=1e3 * float(np.median(timed)),
                                threads=worker.threads)
    throughput[(network, mode, contender)] = rate
