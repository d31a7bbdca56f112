"""Cold and warm start of the training CLI: how much of a short run is Numba compiling.

    python benchmarks/cli_start.py            # prints a markdown table

Runs ``python -m scratchcnn.train --dataset digits --epochs 1 --no-progress``
twice with ``NUMBA_CACHE_DIR`` pointing to a fresh temporary folder: the first
(cold) run compiles every kernel it uses and writes the cache, the second (warm)
loads them and should compile nothing. Each run is a new process, timed from
its start to its exit; inside it ``scratchcnn.engine.profiling.CompileLog`` records what
Numba compiled and for how long.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["CLI_ARGS", "cli_start", "cold_and_warm", "format_starts"]

CLI_ARGS = ["--dataset", "digits", "--epochs", "1", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


def cli_start(cache_dir: Path, run_dir: Path, args=CLI_ARGS) -> dict:
    """Run the CLI once in a new process with ``NUMBA_CACHE_DIR=cache_dir``.

    Returns ``{"wall": s, "compile": s, "compiled": [names], "train": s}`` (seconds):
    wall-clock from process start to exit, time inside Numba compilations, and the
    Trainer's training time (which includes compilations of the first steps).

    Raises
    ------
    RuntimeError
        If the CLI fails; the message holds the end of its output.
    """
    report = run_dir.with_suffix(".json")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(report), "--",
               *args, "--out", str(run_dir)]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the CLI failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    child = json.loads(report.read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"wall": wall, "compile": child["compile"], "compiled": child["compiled"],
            "train": metrics["train_seconds"]}


def cold_and_warm(args=CLI_ARGS) -> dict[str, dict]:
    """``cli_start`` with an empty Numba cache, then again with the cache that run filled."""
    with tempfile.TemporaryDirectory(prefix="scratchcnn-cli-start-") as tmp:
        cache = Path(tmp) / "numba-cache"
        return {name: cli_start(cache, Path(tmp) / f"run-{name}", args) for name in ("cold", "warm")}


def format_starts(starts: dict[str, dict]) -> str:
    """A markdown table of ``cold_and_warm``'s result."""
    lines = [f"`python -m scratchcnn.train {' '.join(CLI_ARGS)}`", "",
             "| start | wall s | Numba compile s | functions compiled | training s |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in starts.items():
        lines.append(f"| {name} | {r['wall']:.1f} | {r['compile']:.1f} | {len(r['compiled'])} | {r['train']:.1f} |")
    if starts.get("warm", {}).get("compiled"):
        lines.append(f"\nWarning: the warm start compiled {sorted(set(starts['warm']['compiled']))}")
    return "\n".join(lines)


def _child(report: str, args: list[str]) -> int:
    """Inside the timed process: run the CLI under a CompileLog and write what it recorded."""
    from scratchcnn import train
    from scratchcnn.engine.profiling import CompileLog

    with CompileLog() as log:
        code = train.main(args)
    Path(report).write_text(json.dumps({"compile": log.seconds, "compiled": log.names}))
    return code


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2], sys.argv[4:]))
    print(format_starts(cold_and_warm()))
