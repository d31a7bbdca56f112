"""Importing scratchcnn changes no process setting; the command-line tools make theirs at start-up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os
import numpy as np
import matplotlib
import kernels.numba_cpu as cpu
import scratchcnn.apps.report, scratchcnn.train, scratchcnn.evaluate, scratchcnn.predict
cpu.gemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # the first parallel kernel
before = {"gomp": os.environ.get("GOMP_SPINCOUNT"), "backend": matplotlib.rcParams._get_backend_or_none()}
from scratchcnn.apps import cli
cli.configure_process()
after = {"gomp": os.environ.get("GOMP_SPINCOUNT"), "backend": matplotlib.get_backend().lower()}
print(json.dumps({"before": before, "after": after}))
"""


def test_imports_change_no_setting_and_configure_process_makes_the_tools_settings():
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "MPLBACKEND")}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["before"] == {"gomp": None, "backend": None}, got
    assert got["after"] == {"gomp": "10000", "backend": "agg"}, got
