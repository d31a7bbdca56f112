"""Execute the teaching notebooks top to bottom and save them with their outputs, in place.

    python tools/run_notebooks.py                       # every notebooks/*.ipynb
    python tools/run_notebooks.py notebooks/03_*.ipynb  # some of them
    python tools/run_notebooks.py --no-solutions ...    # skip the second run with the solutions

Each notebook runs in a fresh IPython kernel of *this* interpreter (so the venv's
scratchcnn is the one imported), with ``notebooks/`` as its working directory and
the environment of the caller (``$SCRATCHCNN_DATA`` says where the data sets are).
It runs twice: as a student sees it (exercises not attempted; these outputs are
saved), then with ``SCRATCHCNN_SOLUTIONS=1``, which swaps in the reference solutions
of ``notebooks/solutions/`` so that every exercise's check cell must pass (that run
is not saved). On success the notebook is rewritten with its outputs and with
``metadata["scratchcnn"]["code_sha256"]``, a hash of its code cells and of the
exercise checks and solutions it uses. ``tests/test_notebooks.py`` fails when a
committed notebook no longer matches that hash, re-executes every notebook with its
solutions, and compares the printed output of the cells tagged ``stable-output``
(machine-independent numbers) with the committed one, so committed outputs come
from the committed code. A failing cell stops the run with its traceback; that
notebook is not rewritten (those before it are).

Exit status: 0 when every notebook ran, 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
CELL_TIMEOUT = 600  # seconds; the longest cell (training, notebook 7) took 13-230 s on 2 shared cores
STABLE_TAG = "stable-output"  # cells whose printed text must be identical on every machine
SOLUTIONS_ENV = "SCRATCHCNN_SOLUTIONS"  # "1": the notebooks use notebooks/solutions/ (notebooks/exercises/__init__.py)
CHECK_CELL = re.compile(r'^check\("([\d.]+)",', re.MULTILINE)

__all__ = ["NOTEBOOK_DIR", "STABLE_TAG", "SOLUTIONS_ENV", "notebook_paths", "exercise_files", "code_sha256",
           "check_results", "execute", "run", "main"]


class ThisPythonKernel(AsyncKernelManager):
    """Starts ipykernel with ``sys.executable``, ignoring any "python3" kernel spec installed elsewhere."""

    @property
    def kernel_spec(self):
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name="Python 3", language="python")


def notebook_paths() -> list[Path]:
    """The notebooks of ``notebooks/``, in file-name order (01_..., 02_..., ...)."""
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def exercise_files(path: Path) -> list[Path]:
    """The exercise machinery, checks and solutions that notebook ``NN_*.ipynb`` uses (those that exist)."""
    chapter = f"ch{path.name[:2]}.py"
    candidates = (NOTEBOOK_DIR / "exercises" / "__init__.py", NOTEBOOK_DIR / "exercises" / chapter,
                  NOTEBOOK_DIR / "solutions" / chapter)
    return [p for p in candidates if p.is_file()]


def code_sha256(nb, path: Path | None = None) -> str:
    """SHA-256 of the notebook's code cells (their sources, in order) and, given its ``path``, of the
    exercise checks and solutions it uses (``exercise_files``); markdown does not count."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode("utf-8") + b"\0")
    for extra in exercise_files(path) if path is not None else ():
        digest.update(extra.name.encode() + b"\0" + extra.read_bytes() + b"\0")
    return digest.hexdigest()


def check_results(nb) -> dict[str, str]:
    """What each exercise's check cell printed: ``{"2.1": "passed" | "not attempted" | "no output"}``."""
    results = {}
    for cell in nb.cells:
        match = CHECK_CELL.search(cell.source) if cell.cell_type == "code" else None
        if match:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
            results[match.group(1)] = ("passed" if f"Exercise {match.group(1)} passed" in text else
                                       "not attempted" if "not attempted yet" in text else "no output")
    return results


def execute(nb, timeout: int = CELL_TIMEOUT, solutions: bool = False, path: Path | None = None):
    """Run every cell of ``nb`` (a ``nbformat`` notebook, changed in place) in a fresh kernel.

    With ``solutions``, the kernel gets ``SCRATCHCNN_SOLUTIONS=1`` (the exercises use the
    reference solutions) and every check cell must report "passed". ``path`` (the notebook's
    file) adds its exercise files to the recorded hash.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        If a cell raises; the message holds the cell's source and traceback.
    nbclient.exceptions.CellTimeoutError
        If a cell runs longer than ``timeout`` seconds.
    nbclient.exceptions.DeadKernelError
        If the kernel dies (out of memory, a crash in compiled code).
    AssertionError
        With ``solutions``, if a check cell did not report "passed".
    """
    client = NotebookClient(nb, timeout=timeout, kernel_manager_class=ThisPythonKernel,
                            record_timing=False, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    env = {key: value for key, value in os.environ.items() if key != SOLUTIONS_ENV}
    client.execute(env={**env, SOLUTIONS_ENV: "1"} if solutions else env)
    if solutions:
        failed = {i: r for i, r in check_results(nb).items() if r != "passed"}
        assert not failed, f"with the solutions, these exercise checks did not pass: {failed}"
    nb.metadata["scratchcnn"] = {"code_sha256": code_sha256(nb, path)}
    return nb


def run(path: Path, solutions: bool = True, timeout: int = CELL_TIMEOUT) -> tuple[float, float]:
    """Execute the notebook at ``path`` and write it back with its outputs, then (``solutions``) run it
    again with the solutions, unsaved; returns the seconds of the two runs (0 for one not done)."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    execute(nb, timeout, path=path)
    seconds = time.perf_counter() - start
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)  # a reader never sees a half-written notebook
    if not solutions:
        return seconds, 0.0
    start = time.perf_counter()
    execute(nbformat.read(path, as_version=4), timeout, solutions=True, path=path)
    return seconds, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all of notebooks/)")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT,
                        help=f"seconds a cell may run (default {CELL_TIMEOUT}; raise it on a busy machine)")
    parser.add_argument("--no-solutions", action="store_true",
                        help="skip the second run of each notebook with its exercises' solutions")
    args = parser.parse_args(argv)
    paths = args.notebooks or notebook_paths()
    for path in paths:
        if not path.is_file():
            print(f"error: {path}: no such notebook", file=sys.stderr)
            return 1
    for path in paths:
        try:
            seconds, with_solutions = run(path, solutions=not args.no_solutions, timeout=args.timeout)
        except (CellExecutionError, CellTimeoutError, DeadKernelError, AssertionError) as exc:
            print(f"error: {path} failed ({type(exc).__name__}); see above for whether it was rewritten:\n{exc}",
                  file=sys.stderr)
            return 1
        print(f"{path.name}: {seconds:.1f} s" + (f", with the solutions {with_solutions:.1f} s" if with_solutions else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
