"""Execute the teaching notebooks top to bottom and save them with their outputs, in place.

    python tools/run_notebooks.py                       # every notebooks/*.ipynb
    python tools/run_notebooks.py notebooks/03_*.ipynb  # some of them

Each notebook runs in a fresh IPython kernel of *this* interpreter (so the venv's
scratchcnn is the one imported), with ``notebooks/`` as its working directory and
the environment of the caller (``$SCRATCHCNN_DATA`` says where the data sets are).
On success the notebook is rewritten with its outputs and with
``metadata["scratchcnn"]["code_sha256"]``, a hash of its code cells.
``tests/test_notebooks.py`` fails when a committed notebook's code cells no longer
match that hash, re-executes every notebook, and compares the printed output of the
cells tagged ``stable-output`` (machine-independent numbers) with the committed one,
so committed outputs come from the committed code. A failing cell stops the run
with its traceback; that notebook is not rewritten (those before it are).

Exit status: 0 when every notebook ran, 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
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
CELL_TIMEOUT = 600  # seconds; the longest cell (training, notebook 7) takes about a minute on 2 cores
STABLE_TAG = "stable-output"  # cells whose printed text must be identical on every machine

__all__ = ["NOTEBOOK_DIR", "STABLE_TAG", "notebook_paths", "code_sha256", "execute", "run", "main"]


class ThisPythonKernel(AsyncKernelManager):
    """Starts ipykernel with ``sys.executable``, ignoring any "python3" kernel spec installed elsewhere."""

    @property
    def kernel_spec(self):
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name="Python 3", language="python")


def notebook_paths() -> list[Path]:
    """The notebooks of ``notebooks/``, in file-name order (01_..., 02_..., ...)."""
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def code_sha256(nb) -> str:
    """SHA-256 of the notebook's code cells (their sources, in order); markdown does not count."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode("utf-8") + b"\0")
    return digest.hexdigest()


def execute(nb, timeout: int = CELL_TIMEOUT):
    """Run every cell of ``nb`` (a ``nbformat`` notebook, changed in place) in a fresh kernel.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        If a cell raises; the message holds the cell's source and traceback.
    nbclient.exceptions.CellTimeoutError
        If a cell runs longer than ``timeout`` seconds.
    nbclient.exceptions.DeadKernelError
        If the kernel dies (out of memory, a crash in compiled code).
    """
    client = NotebookClient(nb, timeout=timeout, kernel_manager_class=ThisPythonKernel,
                            record_timing=False, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()
    nb.metadata["scratchcnn"] = {"code_sha256": code_sha256(nb)}
    return nb


def run(path: Path) -> float:
    """Execute the notebook at ``path`` and write it back with its outputs; returns the seconds taken."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    execute(nb)
    seconds = time.perf_counter() - start
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)  # a reader never sees a half-written notebook
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all of notebooks/)")
    args = parser.parse_args(argv)
    paths = args.notebooks or notebook_paths()
    for path in paths:
        if not path.is_file():
            print(f"error: {path}: no such notebook", file=sys.stderr)
            return 1
    for path in paths:
        try:
            seconds = run(path)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            print(f"error: {path} failed ({type(exc).__name__}); it was not rewritten:\n{exc}", file=sys.stderr)
            return 1
        print(f"{path.name}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
