"""A bounded load run against ``python -m scratchcnn.serve`` on 127.0.0.1 (a fixed number of requests, then stop).

Starts the server in its own process with the given models and options, then:

1. **one at a time**: ``--single`` requests for one 28x28 image with feature maps and saliency
   (``details``), each sent after the previous answer; reports p50/p95 latency as the client
   sees it (HTTP included) and the server's own compute time (``compute_ms``);
2. **load**: ``--requests`` requests from ``--clients`` concurrent client threads (keep-alive
   connections, test images in turn); reports requests/s and p50/p95 latency.

3. with ``--threads``, instead of 1-2: the server's compute for one image with details, in this
   process, with the kernels on one thread (what the server does) and on Numba's default
   number of threads, interleaved.

Prints markdown rows for benchmarks/README.md, with the date, the machine and its load average.

Example
-------
    python benchmarks/web_load.py --model runs/fashion-... --replicas 1 --clients 8 --requests 800
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import re
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from PIL import Image

from scratchcnn.data import load_raw


def start_server(models, replicas: int, backend: str) -> tuple[subprocess.Popen, str]:
    args = [sys.executable, "-m", "scratchcnn.serve", "--port", "0", "--replicas", str(replicas),
            "--backend", backend]
    for model in models:
        args += ["--model", model]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
    if not found:
        proc.kill()
        sys.exit(f"web_load.py: the server did not start: {line}")
    return proc, found.group(1)


def test_pngs(dataset: str, count: int) -> list[bytes]:
    images = load_raw(dataset, progress=False)[2][:count]
    out = []
    for pixels in images:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def post(http: httpx.Client, data: bytes, details: bool) -> tuple[float, dict]:
    started = time.perf_counter()
    response = http.post("/api/predict", files={"image": ("x.png", data, "image/png")},
                         data={"details": "true" if details else "false"})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        sys.exit(f"web_load.py: HTTP {response.status_code}: {response.text[:200]}")
    return elapsed, response.json()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_at_a_time(url: str, images: list[bytes], n: int, pid: int) -> dict:
    """Latency of n sequential requests, and the server's CPU time per request: on a machine shared
    with other work the wall time includes waiting for a core, the CPU time does not."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for data in images[:20]:  # warm the connection and the server's buffers
            post(http, data, True)
        latency, compute = [], []
        cpu = cpu_seconds(pid)
        for i in range(n):
            elapsed, answer = post(http, images[i % len(images)], True)
            latency.append(elapsed)
            compute.append(answer["compute_ms"] / 1e3)
        cpu = (cpu_seconds(pid) - cpu) / n
    return {"p50": np.percentile(latency, 50), "p95": np.percentile(latency, 95), "cpu": cpu,
            "compute_p50": np.percentile(compute, 50), "compute_p95": np.percentile(compute, 95)}


def load(url: str, images: list[bytes], clients: int, requests: int, details: bool) -> dict:
    latency, lock = [], threading.Lock()
    per_client = requests // clients
    start = threading.Barrier(clients + 1)

    def client(k):
        with httpx.Client(base_url=url, timeout=120) as http:
            post(http, images[k % len(images)], details)  # open the connection before the clock starts
            start.wait()
            mine = [post(http, images[(k * per_client + i) % len(images)], details)[0] for i in range(per_client)]
        with lock:
            latency.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    return {"rps": len(latency) / wall, "p50": np.percentile(latency, 50), "p95": np.percentile(latency, 95),
            "n": len(latency), "wall": wall}


def compute_threads(model_dir: str, images: list[bytes], n: int, backend: str) -> None:
    """Median and p95 of ServedModel.predict(details=True): one kernel thread vs Numba's default."""
    import numba

    from scratchcnn.apps.web import service

    served = service.load_served([model_dir], backend=backend)
    entry = next(iter(served.values()))
    entry.warm_up()
    one_thread, default = service._one_thread, numba.config.NUMBA_NUM_THREADS
    times = {"1 thread": [], f"{default} threads": []}
    for i in range(n):
        for label in times:  # interleaved, so that the machine's load falls on both alike
            if label == "1 thread":
                service._one_thread = one_thread
            else:
                service._one_thread = lambda: numba.set_num_threads(default)
            started = time.perf_counter()
            entry.predict(images[i % len(images)], service.Limits(), details=True)
            times[label].append(time.perf_counter() - started)
    print("| kernels on | requests | p50 ms | p95 ms |")
    print("| --- | ---: | ---: | ---: |")
    for label, values in times.items():
        print(f"| {label} | {n} | {np.percentile(values, 50) * 1e3:.1f} | {np.percentile(values, 95) * 1e3:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--dataset", default="fashion", help="test images to send (default: fashion)")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=800, help="requests of the load run (0: skip it)")
    p.add_argument("--single", type=int, default=300)
    p.add_argument("--details", action=argparse.BooleanOptionalAction, default=True,
                   help="ask for feature maps and saliency in the load run too (default: yes)")
    p.add_argument("--threads", action="store_true",
                   help="measure only the compute with 1 kernel thread vs the default, in this process")
    args = p.parse_args()
    images = test_pngs(args.dataset, 100)
    if args.threads:
        print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; 1-minute load average "
              f"{os.getloadavg()[0]:.1f}")
        compute_threads(args.model[0], images, args.single, args.backend)
        return
    proc, url = start_server(args.model, args.replicas, args.backend)
    try:
        single = one_at_a_time(url, images, args.single, proc.pid)
        loaded = load(url, images, args.clients, args.requests, args.details) if args.requests else None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    busy = os.getloadavg()[0]
    print(f"{stamp}; {os.cpu_count()} cores ({platform.processor() or platform.machine()}); "
          f"1-minute load average at the end {busy:.1f}; backend {args.backend}, replicas {args.replicas}")
    print("| run | requests | p50 ms | p95 ms | requests/s | server compute p50 / p95 ms | server CPU ms/request |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| one at a time, details | {args.single} | {single['p50'] * 1e3:.1f} | {single['p95'] * 1e3:.1f} | "
          f"{1 / single['p50']:.0f} | {single['compute_p50'] * 1e3:.1f} / {single['compute_p95'] * 1e3:.1f} | "
          f"{single['cpu'] * 1e3:.1f} |")
    if loaded:
        print(f"| {args.clients} clients, {'details' if args.details else 'classes only'} | {loaded['n']} | "
              f"{loaded['p50'] * 1e3:.1f} | {loaded['p95'] * 1e3:.1f} | {loaded['rps']:.1f} | | |")


if __name__ == "__main__":
    main()
