"""Reopening an image folder's cache: issue 22's "later runs open the cache in well under a second".

    python benchmarks/folder_reopen.py FOLDER [FOLDER ...]             # best of 3 per folder, a markdown table
    python benchmarks/folder_reopen.py --tree /tmp/before FOLDER ...   # another checkout's code (before/after)

For each folder, with the user cache as it is (point ``XDG_CACHE_HOME`` somewhere else to keep
your own apart), a first ``load_folder`` makes sure the cache exists (decoding the folder if it
has to; not counted). Then, best of ``--repeat``:

- ``scan``: ``scan_folder`` alone (list every file, one ``stat`` each, and the listing's key);
- ``reopen``: ``load_folder`` in a process that already imported it, from the call to the splits
  ready (scan, key, the headers that choose the size and channels, the cache mapped, test and
  validation splits, the training split's statistics read back);
- ``new process``: a fresh Python that imports ``scratchcnn.train`` (the training CLI's imports),
  reads the command line ``--dataset folder --data-dir FOLDER`` and loads the data as the CLI
  does (``scratchcnn.apps.run._load_data``): wall time from the process start to its exit, the
  part of ``python -m scratchcnn.train`` before the model is built (the child also reports its
  imports' and the data's shares, shown in brackets).

Every timing runs in a child process of ``--tree`` (its ``scratchcnn`` first on ``sys.path``), so
one copy of this script measures two checkouts. The load average (``/proc/loadavg``) before and
after is printed under the table, since the machine's other work inflates every figure; the
last line is a JSON record with the date, for the README.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The child: one measurement in the tree given by sys.argv[2], printed as one JSON line.
_CHILD = r"""
import json, sys, time
start = time.perf_counter()
mode, tree, folder, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, tree)
if mode == "cli":
    from scratchcnn.apps.run import _load_data
    from scratchcnn.train import build_parser, config_from_args
    imported = time.perf_counter()
    config = config_from_args(build_parser().parse_args(["--dataset", "folder", "--data-dir", folder]))
    config, splits = _load_data(config, progress=False, log=lambda *a: None)
    assert splits.info["cache_reused"]
    print(json.dumps({"import_s": imported - start, "load_s": time.perf_counter() - imported}))
else:
    from scratchcnn.data.folder import load_folder, scan_folder
    first = load_folder(folder, progress=False, log=lambda *a: None)  # makes the cache if needed
    scans, loads = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        scan = scan_folder(folder)
        scan.key()
        scans.append(time.perf_counter() - t)
        t = time.perf_counter()
        splits = load_folder(folder, progress=False, log=lambda *a: None)
        loads.append(time.perf_counter() - t)
        assert splits.info["cache_reused"] and splits.info["cache"] == first.info["cache"]
    files = scan.count if hasattr(scan, "count") else len(scan.entries)  # older trees: no Scan.count
    print(json.dumps({"files": files, "scan_s": min(scans), "reopen_s": min(loads),
                      "scans": scans, "reopens": loads}))
"""


def _child(mode: str, tree: Path, folder: Path, repeat: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode, str(tree), str(folder), str(repeat)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the {mode} child failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(folder: Path, tree: Path = ROOT, repeat: int = 3) -> dict:
    """The reopen figures of one folder (keys: the module docstring's, in seconds, best of ``repeat``)."""
    record = {"folder": str(folder), **_child("load", tree, folder, repeat)}
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        child = _child("cli", tree, folder, 1)
        runs.append({"wall_s": time.perf_counter() - t, **child})
    best = min(runs, key=lambda run: run["wall_s"])
    record.update(new_process_s=best["wall_s"], new_process_import_s=best["import_s"],
                  new_process_load_s=best["load_s"], new_processes=runs)
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--tree", type=Path, default=ROOT, help="checkout whose scratchcnn is measured (default: this one)")
    p.add_argument("--repeat", type=int, default=3, help="timings per figure, the best is kept (default: 3)")
    args = p.parse_args(argv)
    load_before = open("/proc/loadavg").read().split()[:3]
    records = [measure(folder.resolve(), args.tree.resolve(), args.repeat) for folder in args.folders]
    load_after = open("/proc/loadavg").read().split()[:3]
    print("| folder | files | scan | reopen | new process: start to data ready (imports + data) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in records:
        print(f"| {r['folder']} | {r['files']:,} | {r['scan_s']:.2f} s | {r['reopen_s']:.2f} s | "
              f"{r['new_process_s']:.2f} s ({r['new_process_import_s']:.2f} + {r['new_process_load_s']:.2f} s) |")
    print(f"\nload average (1, 5, 15 min) before: {' '.join(load_before)}; after: {' '.join(load_after)}")
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "tree": str(args.tree.resolve()), "repeat": args.repeat,
                      "load_before": load_before, "load_after": load_after, "records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
