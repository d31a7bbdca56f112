"""The teaching notebooks (notebooks/*.ipynb): each runs top to bottom, and its committed outputs belong to it.

Two kinds of check:

- fast, on the committed files: outputs were saved by ``tools/run_notebooks.py`` from
  exactly the committed code cells and exercise files (hash in the metadata), every code
  cell ran once, in order, without error, every exercise's check cell shows the student's
  view ("not attempted yet"), and the README links every notebook;
- slow (marked ``slow``; CI runs them too), executing each notebook in a fresh kernel
  **with the exercises' solutions** (``SCRATCHCNN_SOLUTIONS=1``): any failing cell
  (including the ``assert`` lines that check each notebook's claims, and every exercise
  check, which must report "passed") fails the test, and the cells tagged
  ``stable-output`` (hand-checkable numbers that do not depend on the machine) must print
  exactly what the committed notebook shows, so committed outputs cannot drift from what
  the current code computes. ``tests/test_exercises.py`` shows the checks fail on wrong
  answers, and ``tools/run_notebooks.py`` runs each notebook both ways.

Run time: the fast checks take about 1 s. Executing the eight notebooks took about 2 minutes on
2 quiet cores before the exercises and notebooks 9 and 10 were added (105 s at load 3). On
2026-11-30, with the exercises, the solution runs took 12-130 s per notebook for notebooks 1-6 and
340-490 s for notebooks 8 and 10 at a load average of 12-30 on the 2-core machine (seven engineers'
work at once); those figures measure the load more than the notebooks, and a quiet 2-core run was
not measured.
"""
from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)

NOTEBOOKS = runner.notebook_paths()
MAX_BYTES = 600_000  # PNGs at modest size keep each committed notebook readable on a code host
REGENERATE = "python tools/run_notebooks.py"


def _ids(path: Path) -> str:
    return path.stem


def _printed_text(cell) -> str:
    """What a code cell printed (stdout) and returned as text; images and stderr warnings excluded."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.name == "stdout":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", "") if "image/png" not in output.get("data", {})
                         else "")
    return "".join(parts)


def test_the_readme_links_every_notebook():
    assert len(NOTEBOOKS) >= 8, [p.name for p in NOTEBOOKS]
    readme = (runner.NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)\s]+\.ipynb)\)", readme))
    assert linked == {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_outputs_come_from_the_committed_code(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    recorded, current = nb.metadata.get("scratchcnn", {}).get("code_sha256"), runner.code_sha256(nb, path)
    assert recorded == current, (
        f"{path.name}: its code cells (or its exercise checks and solutions) changed after its outputs were saved; "
        f"run {REGENERATE} notebooks/{path.name}")
    checks = runner.check_results(nb)
    assert checks and set(checks.values()) == {"not attempted"}, (
        f"{path.name}: the committed check cells must show a student's first run, got {checks}")
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name}: cells were not run once, top to bottom; run {REGENERATE} notebooks/{path.name}")
    errors = [output.ename for cell in code for output in cell.outputs if output.output_type == "error"]
    assert not errors, f"{path.name}: saved with errors {errors}"
    stable = [cell for cell in code if runner.STABLE_TAG in cell.metadata.get("tags", [])]
    assert stable and all(_printed_text(cell) for cell in stable), f"{path.name}: no printed checkable numbers"
    assert any("image/png" in output.get("data", {}) for cell in code for output in cell.outputs), (
        f"{path.name}: shows no figure")
    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_and_reproduces_its_checkable_numbers(path, data_dir):
    committed = nbformat.read(path, as_version=4)
    # CellExecutionError, with the traceback, on any failure; AssertionError if an exercise check did not pass.
    fresh = runner.execute(copy.deepcopy(committed), solutions=True, path=path)
    for index, (before, after) in enumerate(zip(committed.cells, fresh.cells)):
        if runner.STABLE_TAG in before.metadata.get("tags", []):
            assert _printed_text(after) == _printed_text(before), (
                f"{path.name}, cell {index}: the current code prints something else than the committed notebook; "
                f"run {REGENERATE} notebooks/{path.name} and review the difference")


def _links(text: str) -> list[str]:
    """Targets of the Markdown links in ``text`` (web links and in-page anchors excluded)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t.split("#")[0] for t in targets if not t.startswith(("http://", "https://", "mailto:", "#"))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_links_resolve_and_lead_to_the_next_notebook(path):
    markdown = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    missing = [t for t in _links(markdown) if not (path.parent / t).exists()]
    assert not missing, f"{path.name} links to files that do not exist: {missing}"
    later = NOTEBOOKS[NOTEBOOKS.index(path) + 1:]
    if later:
        assert later[0].name in _links(markdown), f"{path.name} does not link to the next notebook, {later[0].name}"


def test_the_readme_links_resolve():
    readme = runner.NOTEBOOK_DIR / "README.md"
    missing = [t for t in _links(readme.read_text(encoding="utf-8")) if not (readme.parent / t).exists()]
    assert not missing, f"notebooks/README.md links to files that do not exist: {missing}"
