"""Running a study's trials: in this process, or in K worker processes that share the cores.

Several trials at once on one machine run in separate processes, not threads:
the cpu backend's kernels run on Numba's thread pool, one per process, and
NumPy/BLAS and the Python parts of a step would serialise threads anyway. Each
worker gets ``cores // K`` threads (``NUMBA_NUM_THREADS`` and the BLAS/OpenMP
variables, which are read when the pool starts, hence set before the process
starts), runs its share of the trials and talks to the others only through the
study's database.

A worker is ``python -m scratchcnn.apps.tune --worker I --trials N``
reading the study's spec (a JSON object, ``Spec``) on its standard input, so
that a database password never appears in a command line or a file.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

import numpy as np

from scratchcnn.errors import ConfigError, TrainingDiverged

from .space import grid_space, parse_space
from .study import make_pruner, make_sampler, open_storage, open_study
from .trial import objective

__all__ = ["Spec", "run_trials", "run_workers", "thread_counts", "THREAD_VARIABLES"]

# What sizes a process's thread pools: Numba's (the cpu kernels), OpenMP's, and the BLAS libraries'.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Spec:
    """Everything a worker needs to run trials of a study (JSON-serialisable)."""

    study: str            # the study's name in the storage
    storage: str          # its URL (may hold a password: never put on a command line)
    study_dir: str        # the folder that receives the trial folders
    fixed: dict           # the run options every trial shares (scratchcnn.apps.run.RUN_OPTIONS)
    space: list           # the --search strings of the searched options
    sampler: str
    pruner: str
    pruner_startup: int
    backend: str | None = None


def thread_counts(workers: int, cores: int) -> list[int]:
    """Threads of each of ``workers`` processes sharing ``cores`` cores: equal shares, the rest to the first
    ones, at least one each (more workers than cores oversubscribe; the caller warns)."""
    return [max(1, cores // workers + (i < cores % workers)) for i in range(workers)]


def run_trials(spec: Spec, trials: int, timeout: float | None, worker: int = 0, say=print) -> None:
    """Run up to ``trials`` trials of the study in this process (stop early after ``timeout`` seconds).

    A trial that diverges is marked failed and the study goes on; any other error
    ends the worker. The sampler's seed comes from the runs' seed, the worker's
    index and the trials already in the study, so workers draw different points.

    Raises
    ------
    ConfigError
        For a storage that cannot be opened (see ``study.open_storage``).
    KeyboardInterrupt
        On Ctrl-C (the running trial's checkpoint is saved, the trial marked failed).
    """
    import optuna

    optuna.logging.set_verbosity(logging.ERROR)  # each trial says its own one-line summary
    space = parse_space(spec.space)
    storage = open_storage(spec.storage)
    pruner = make_pruner(spec.pruner, spec.fixed["epochs"], spec.pruner_startup)
    study = open_study(spec.study, storage, None, pruner)
    seed = int(np.random.SeedSequence([spec.fixed["seed"], worker, len(study.trials)]).generate_state(1)[0])
    study.sampler = make_sampler(spec.sampler, grid_space(space) if spec.sampler == "grid" else None, seed)
    study.optimize(lambda trial: objective(trial, spec.fixed, space, spec.study_dir, spec.backend, say),
                   n_trials=trials, timeout=timeout, catch=(TrainingDiverged,))


def run_workers(spec: Spec, workers: int, trials: int, timeout: float | None, cores: int | None = None,
                say=print) -> int:
    """Run ``trials`` trials in ``workers`` processes at once (module docstring); returns 0 if all ended well.

    The trials are shared out evenly; each worker prints one line per trial
    start and end, prefixed with its number, and each trial's own output goes to
    its folder's ``train.log``.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, after every worker has stopped (they stop at a step boundary and
        save their checkpoint, as ``scratchcnn.train`` does).
    """
    cores = cores or len(os.sched_getaffinity(0))
    threads = thread_counts(workers, cores)
    if workers > cores:
        say(f"warning: {workers} workers on {cores} cores: each gets one thread, and they compete for the cores")
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    payload = json.dumps(asdict(spec))
    processes = []
    for i, (n, t) in enumerate(zip(shares, threads)):
        if n == 0:
            continue
        env = {**os.environ, **{name: str(t) for name in THREAD_VARIABLES}}
        command = [sys.executable, "-m", "scratchcnn.apps.tune", "--worker", str(i + 1),
                   "--trials", str(n)] + (["--timeout", repr(timeout)] if timeout else [])
        process = subprocess.Popen(command, stdin=subprocess.PIPE, env=env, text=True)
        process.stdin.write(payload)
        process.stdin.close()
        processes.append((i + 1, process))
    say(f"{len(processes)} workers, {', '.join(str(t) for t in threads[:len(processes)])} threads each, "
        f"{trials} trials")
    failed = []
    try:
        for index, process in processes:
            if process.wait() != 0:
                failed.append(f"worker {index} exited with code {process.returncode}")
    except KeyboardInterrupt:
        for _, process in processes:
            process.wait()  # they got the same Ctrl-C and are saving their checkpoints
        raise
    for line in failed:
        say(line)
    return 1 if failed else 0
