"""Benchmark set-up: let idle thread pools go to sleep before each timing; print images/s side by side."""
from __future__ import annotations

import os
import time

import pytest

import workloads

# Tests never download; the benchmarks use random data, but share the tests' rule.
os.environ.setdefault("SCRATCHCNN_OFFLINE", "1")
THROUGHPUT = pytest.StashKey[dict]()  # {(network, mode, contender): images/s}, for the terminal summary
SETTLE_SECONDS = 0.3  # > OpenBLAS's spin-wait (2**28 cycles, ~0.1 s at 2.5 GHz) before its threads sleep


def timing(config) -> bool:
    """Whether pytest-benchmark times (``--benchmark-enable`` overrides the configured ``--benchmark-disable``)."""
    return not config.getoption("benchmark_disable") or config.getoption("benchmark_enable")


@pytest.fixture(autouse=True)
def settle(request):
    """When timing, pause so threads still spinning from the previous benchmark do not steal cores."""
    if timing(request.config):
        time.sleep(SETTLE_SECONDS)


@pytest.fixture
def throughput(request) -> dict:
    """Where a whole-step benchmark records images/s under (network, mode, contender)."""
    return request.config.stash.setdefault(THROUGHPUT, {})


def pytest_terminal_summary(terminalreporter, config):
    rates = config.stash.get(THROUGHPUT, {})
    if not rates or not timing(config):
        return
    tr = terminalreporter
    tr.section(f"images/s, batch {workloads.BATCH} (median step)")
    for network in workloads.NETWORKS:
        for mode in ("train", "infer"):
            row = {c: r for (n, m, c), r in rates.items() if n == network and m == mode}
            if not row:
                continue
            cells = [f"{c} {r:,.0f}" for c, r in row.items()]
            ratios = [f"cpu/{other} {row['cpu'] / row[other]:.2f}x" for other in ("numpy", "torch")
                      if "cpu" in row and other in row]
            tr.write_line(f"{network:9s} {mode:5s}  " + "  ".join(cells)
                          + ("   (" + ", ".join(ratios) + ")" if ratios else ""))
