"""One contender (numpy, cpu or torch) in its own process, timing training and inference steps on request.

Why a process per contender: on a machine with few cores, a thread pool that was
busy a moment ago keeps spinning (NumPy's OpenBLAS for up to ~0.1 s after each
product, OpenMP runtimes for a while after each parallel region) and takes cores
from whichever pool runs next. In one process, PyTorch, NumPy's OpenBLAS and
Numba's OpenMP pool would slow each other down; in separate processes each
contender has its own pool, sized to the same thread count, as a user running
one framework would. The parent only waits on a pipe while a worker runs.

Protocol: the parent writes one JSON command per line to the worker's stdin and
reads one JSON reply per line from its stdout (``Worker`` below does both).
Run by hand: ``python benchmarks/worker.py cpu 2`` and type ``{"cmd": "info"}``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["CONTENDERS", "Worker", "thread_env"]

CONTENDERS = ("numpy", "cpu", "torch")
ROOT = Path(__file__).resolve().parents[1]


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that size every thread pool a contender may start to ``threads``."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n, "NUMBA_NUM_THREADS": n}


class Worker:
    """Parent side: starts ``worker.py CONTENDER THREADS`` and sends it commands.

    ``omp_wait_policy`` ("passive", "active") sets ``OMP_WAIT_POLICY`` for the worker;
    by default it is unset, so each framework runs with its own default (scratchcnn's
    cpu worker sets GOMP_SPINCOUNT=10000 as its command-line tools do, PyTorch keeps
    the OpenMP default).

    Raises
    ------
    RuntimeError
        If the worker dies or answers with an error (its message and stderr tail included).
    """

    def __init__(self, contender: str, threads: int, omp_wait_policy: str | None = None):
        if contender not in CONTENDERS:
            raise ValueError(f"unknown contender {contender!r}; expected one of {CONTENDERS}")
        self.contender, self.threads = contender, threads
        env = {**os.environ, **thread_env(threads)}
        # Each framework with its own default, unless one policy is asked for: this process may
        # hold the GOMP_SPINCOUNT that scratchcnn's tools set for themselves, which PyTorch must not inherit.
        env.pop("OMP_WAIT_POLICY", None)
        env.pop("GOMP_SPINCOUNT", None)
        if omp_wait_policy:
            env["OMP_WAIT_POLICY"] = omp_wait_policy
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self._stderr = tempfile.TemporaryFile("w+")  # a file, not a pipe: it cannot fill up and block
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), contender, str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)

    def _ask(self, **command):
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            self._stderr.seek(0)
            raise RuntimeError(f"{self.contender} worker exited ({code}): {self._stderr.read()[-2000:]}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.contender} worker: {reply['error']}")
        return reply

    def info(self) -> dict:
        """Versions and the thread counts in effect inside the worker."""
        return self._ask(cmd="info")

    def check(self, path, network: str = "classic") -> dict:
        """``reference_check`` of the worker's ``network`` on the default batch, as host arrays."""
        import numpy as np

        self._ask(cmd="check", path=str(path), network=network)
        with np.load(path) as data:
            return dict(data)

    def run(self, mode: str, steps: int, network: str = "classic") -> list[float]:
        """Seconds of each of ``steps`` steps; mode "train" (a full step) or "infer" (forward only)."""
        return self._ask(cmd=mode, steps=steps, network=network)["seconds"]

    def profile(self, repeats: int, network: str = "classic") -> dict:
        """Per-layer and per-kernel profile of a training step (numpy and cpu only)."""
        return self._ask(cmd="profile", repeats=repeats, network=network)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._ask(cmd="quit")
            except (RuntimeError, OSError, ValueError):
                pass
            self._proc.wait(timeout=30)
        self._stderr.close()


# ----------------------------------------------------------------------------- worker side

class _Contender:
    """The networks of one contender, built on first use, ready to step on the default batch."""

    def __init__(self, name: str, threads: int):
        if name == "torch":
            # First, so that it loads without scratchcnn's GOMP_SPINCOUNT: PyTorch's own
            # OpenMP runtime reads it when it loads, and must start as a PyTorch user's would.
            import torch

            torch.set_num_threads(threads)
            self.torch = torch
        self.omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
        import numba
        import numpy as np

        import workloads
        from scratchcnn.engine import profiling

        self.name, self.np, self.profiling = name, np, profiling
        if name == "cpu":
            # Before set_num_threads starts the OpenMP runtime, which reads its settings only then:
            # the GOMP_SPINCOUNT default of scratchcnn's command-line tools must be in place by that moment.
            from scratchcnn.apps.cli import set_openmp_defaults

            set_openmp_defaults()
        numba.set_num_threads(threads)
        self.x, self.y = workloads.default_batch()
        self.nets: dict[str, dict] = {}

    def net(self, network: str) -> dict:
        """``{"model", "train", "infer"[, "twin"]}`` of preset ``network``, built on first use."""
        if network in self.nets:
            return self.nets[network]
        import workloads

        np, profiling = self.np, self.profiling
        model = workloads.default_model("numpy" if self.name == "torch" else self.name, network=network)
        net = {"model": model}
        if self.name == "torch":
            from torch_twin import TorchTwin

            twin = net["twin"] = TorchTwin(model)
            xt, yt = self.torch.from_numpy(self.x), self.torch.from_numpy(self.y)
            net["train"] = lambda: twin.train_step(xt, yt)
            net["infer"] = lambda: twin.infer(xt)
        else:
            K = model.K
            xb, yb, stats = K.asarray(self.x), K.asarray(self.y), K.zeros((2,), np.float64)
            net["train"] = lambda: profiling.train_step(model, xb, yb, stats)
            from scratchcnn.nn.layers import BatchNorm2D

            unfused_bn = any(isinstance(step, BatchNorm2D) for step in model.plan)
            if self.name == "cpu" and unfused_bn:
                # Inference as a deployment would run it: batch norm folded into the layer before it,
                # once, from the weights and statistics the training rounds left (scratchcnn.nn.folding).
                net["infer"] = lambda: self._folded(network).forward(xb, training=False)
            else:
                # Fused ConvBNReLU steps fold the running statistics into the convolution's epilogue
                # themselves (measured 2026-11-30: 1,893 images/s against 980 for fold_batchnorm's
                # copy, whose Conv2D-ReLU pairs run unfused).
                net["infer"] = lambda: model.forward(xb, training=False)
        self.nets[network] = net
        return net

    def _folded(self, network: str):
        net = self.nets[network]
        if "folded" not in net:
            from scratchcnn.nn.folding import fold_batchnorm

            net["folded"] = fold_batchnorm(net["model"])
        return net["folded"]

    def info(self) -> dict:
        import platform

        import numba
        import numpy as np
        from threadpoolctl import threadpool_info

        info = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                "numba_threads": numba.get_num_threads(),
                "pools": [f"{p['internal_api']} {Path(p['filepath']).name}: {p['num_threads']}"
                          for p in threadpool_info()]}
        if self.name == "torch":
            info.update(torch=self.torch.__version__, torch_threads=self.torch.get_num_threads(),
                        omp_wait_policy=self.omp_wait_policy)
        if self.name == "cpu":  # set_openmp_defaults sets GOMP_SPINCOUNT unless given a policy
            info.update(threading_layer=numba.threading_layer(),
                        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset"),
                        gomp_spincount=os.environ.get("GOMP_SPINCOUNT", "unset"))
        return info

    def check(self, path: str, network: str) -> dict:
        import workloads

        net = self.net(network)
        if self.name == "torch":
            arrays = net["twin"].reference_check(self.x, self.y)
        else:
            arrays = workloads.reference_check(net["model"], self.x, self.y)
        self.np.savez(path, **arrays)
        return {}

    def timed(self, fn, steps: int) -> dict:
        return {"seconds": self.profiling.time_calls(fn, steps, warmup=0).tolist()}

    def profile(self, repeats: int, network: str) -> dict:
        P = self.profiling
        if self.name == "torch":
            raise ValueError("no per-layer profile for torch (use torch.profiler)")
        model = self.net(network)["model"]
        layers = P.layer_profile(model, self.x, self.y, repeats=repeats)
        kernels = P.kernel_profile(model, self.x, self.y, repeats=repeats)
        return {"layers": [[r.name, r.forward, r.backward] for r in layers],
                "kernels": {k: list(v) for k, v in kernels.items()}}


def _serve(name: str, threads: int) -> None:
    replies = sys.stdout
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the protocol
    contender = _Contender(name, threads)
    network = lambda c: c.get("network", "classic")  # noqa: E731
    handlers = {"info": lambda c: contender.info(),
                "check": lambda c: contender.check(c["path"], network(c)),
                "train": lambda c: contender.timed(contender.net(network(c))["train"], c["steps"]),
                "infer": lambda c: contender.timed(contender.net(network(c))["infer"], c["steps"]),
                "profile": lambda c: contender.profile(c["repeats"], network(c))}
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        try:
            reply = handlers[command["cmd"]](command)
        except Exception as exc:  # noqa: BLE001 - any failure goes back to the parent, which raises
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
