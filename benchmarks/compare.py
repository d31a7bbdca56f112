"""The side-by-side comparison for README.md: images/s of numpy, cpu and PyTorch, profiles, CLI start.

    python benchmarks/compare.py                 # everything, both networks, ~8 minutes on 2 cores
    python benchmarks/compare.py --network vgg-small --no-cli --no-profile --rounds 5 --steps 10   # a quick look

Prints markdown: the machine, training and inference throughput of both preset
networks (``classic``, ``vgg-small``) at batch 64 with ratios, where a training
step's time goes (per layer and per kernel) for numpy and cpu, and the CLI's cold
and warm start.

How it stays fair (details in README.md): every contender runs in its own worker
process (``worker.py``) with every thread pool sized to the same count; each
must first reproduce the NumPy reference's logits and gradients; rounds are
interleaved (numpy, cpu, torch, then cpu, torch, numpy, ...) so that a change in
background load hits all contenders alike; the figure is the median step.
Run it on a quiet machine: the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numba
import numpy as np

import workloads
from bench_train_step import assert_same_network
from cli_start import cold_and_warm, format_starts
from scratchcnn.engine.profiling import LayerTime, format_profile
from worker import Worker

LABELS = {"numpy": "numpy", "cpu": "cpu (Numba)", "torch": "PyTorch CPU"}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(infos: dict[str, dict], threads: int) -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    any_info = next(iter(infos.values()))
    versions = [f"Python {any_info['python']}", f"NumPy {any_info['numpy']}", f"Numba {any_info['numba']}"]
    if "cpu" in infos:
        versions[-1] += f" ({infos['cpu']['threading_layer']} threading layer)"
    if "torch" in infos:
        versions.append(f"PyTorch {infos['torch']['torch']}")
    lines = [f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({usable} usable); "
             f"{threads} threads per contender",
             f"- {', '.join(versions)}; {platform.system()} {platform.release()}"]
    for name, info in infos.items():
        extra = f"; torch.get_num_threads() = {info['torch_threads']}" if name == "torch" else ""
        if "omp_wait_policy" in info:
            extra += f"; OMP_WAIT_POLICY {info['omp_wait_policy']}"
        lines.append(f"- {LABELS[name]} worker thread pools: {'; '.join(info['pools'])}{extra}")
    return "\n".join(lines)


def measure(workers: dict[str, Worker], rounds: int, steps: int,
            network: str = "classic") -> dict[tuple[str, str], np.ndarray]:
    """Per-step seconds of every (mode, contender) on ``network``, rounds interleaved and rotated."""
    names = list(workers)
    seconds = {(mode, name): [] for mode in ("train", "infer") for name in names}
    for mode in ("train", "infer"):
        for name in names:  # warm-up: caches, page faults, the first Adam moments
            workers[name].run(mode, steps, network)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                seconds[(mode, name)] += workers[name].run(mode, steps, network)
    return {key: np.array(value) for key, value in seconds.items()}


def throughput_table(seconds, names) -> str:
    head = "| images/s (batch 64) | " + " | ".join(LABELS[n] for n in names)
    ratios = [(a, b) for a, b in (("cpu", "torch"), ("cpu", "numpy"), ("torch", "numpy"))
              if a in names and b in names]
    head += "".join(f" | {LABELS[a]} / {LABELS[b]}" for a, b in ratios) + " |"
    lines = [head, "| --- " + "| ---: " * (len(names) + len(ratios)) + "|"]
    for mode, label in (("train", "training step"), ("infer", "inference")):
        rate = {n: workloads.BATCH / float(np.median(seconds[(mode, n)])) for n in names}
        spread = {n: workloads.BATCH / np.percentile(seconds[(mode, n)], [75, 25]) for n in names}
        cells = [f"{rate[n]:,.0f} ({spread[n][0]:,.0f}-{spread[n][1]:,.0f})" for n in names]
        cells += [f"{rate[a] / rate[b]:.2f}x" for a, b in ratios]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("\nMedian over all timed steps; in brackets the rates at the 75th and 25th percentile "
                 "of step time.")
    return "\n".join(lines)


def kernel_table(profiles: dict[str, dict]) -> str:
    names = list(profiles)
    totals = {n: sum(s for _, s in profiles[n]["kernels"].values()) or 1.0 for n in names}
    order = sorted({k for n in names for k in profiles[n]["kernels"]},
                   key=lambda k: -max(profiles[n]["kernels"].get(k, (0, 0.0))[1] for n in names))
    lines = ["| kernel | " + " | ".join(f"{LABELS[n]} calls | ms | share" for n in names) + " |",
             "| --- " + "| ---: | ---: | ---: " * len(names) + "|"]
    for kernel in order:
        cells = []
        for n in names:
            calls, secs = profiles[n]["kernels"].get(kernel, (0, 0.0))
            cells.append(f"{calls} | {secs * 1e3:.2f} | {secs / totals[n]:.0%}" if calls else " | | ")
        lines.append(f"| {kernel} | " + " | ".join(cells) + " |")
    lines.append("| **sum** | " + " | ".join(f" | {totals[n] * 1e3:.2f} | 100%" for n in names) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=numba.get_num_threads(),
                   help="threads per contender (default: numba.get_num_threads(), one per core)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds per contender (default: 15)")
    p.add_argument("--steps", type=int, default=20, help="steps per round (default: 20)")
    p.add_argument("--profile-repeats", type=int, default=20, help="steps per profile (default: 20)")
    p.add_argument("--network", choices=workloads.NETWORKS, action="append",
                   help="network to measure (repeatable; default: all of " + ", ".join(workloads.NETWORKS) + ")")
    p.add_argument("--no-numpy", action="store_true", help="leave the NumPy reference out (it is slow on vgg-small)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-profile", action="store_true", help="skip the per-layer and per-kernel profiles")
    p.add_argument("--no-cli", action="store_true", help="skip the CLI cold/warm start")
    p.add_argument("--omp-wait-policy", choices=("passive", "active"),
                   help="OMP_WAIT_POLICY for every contender (default: each framework's own)")
    args = p.parse_args(argv)

    networks = args.network or list(workloads.NETWORKS)
    names = ["cpu"] if args.no_numpy else ["numpy", "cpu"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401 - only whether it is there
            names.append("torch")
        except ImportError:
            print("(PyTorch is not installed: pip install -e '.[bench]')", file=sys.stderr)
    load_before = os.getloadavg()
    workers = {n: Worker(n, args.threads, args.omp_wait_policy) for n in names}
    seconds, profiles = {}, {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for network in networks:
                model = workloads.default_model("numpy", network=network)
                reference = workloads.reference_check(model, *workloads.default_batch())
                for n, w in workers.items():
                    assert_same_network(w.check(Path(tmp) / f"{n}-{network}.npz", network), reference,
                                        f"{n} {network}")
        infos = {n: w.info() for n, w in workers.items()}
        for network in networks:
            seconds[network] = measure(workers, args.rounds, args.steps, network)
            if not args.no_profile:
                profiles[network] = {n: workers[n].profile(args.profile_repeats, network)
                                     for n in ("numpy", "cpu") if n in workers}
    finally:
        for w in workers.values():
            w.close()
    load_after = os.getloadavg()

    print("## Machine\n")
    print(machine(infos, args.threads))
    print(f"- 1-minute load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"(on {os.cpu_count()} cores; well below 1 means quiet)\n")
    for network in networks:
        print(f"## Throughput: {network}, batch {workloads.BATCH}, "
              f"{args.rounds} rounds x {args.steps} steps per contender\n")
        print(throughput_table(seconds[network], names))
        print()
    for network, by_name in profiles.items():
        for n, profile in by_name.items():
            rows = [LayerTime(*row) for row in profile["layers"]]
            print(f"\n## Where a training step's time goes: {network}, {LABELS[n]}, per step of the plan "
                  f"(median of {args.profile_repeats})\n")
            print(format_profile(rows))
        print(f"\n## By kernel: {network} (mean of {args.profile_repeats} steps)\n")
        print(kernel_table(by_name))
    if not args.no_cli:
        print("\n## CLI start: Numba compile vs run\n")
        print(format_starts(cold_and_warm()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
