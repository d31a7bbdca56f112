"""Import arrows run one way: kernels <- nn <- engine <- files <- apps and the tools (data and errors at
the bottom). Walks every module's imports (module level and inside functions) and fails on an upward one."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Rank of each part of the code base: a module may import only from its own rank or lower ones.
RANKS = {"kernels": 0, "scratchcnn.errors": 0, "scratchcnn.data": 0, "scratchcnn.nn": 1,
         "scratchcnn.engine": 2, "scratchcnn.files": 3, "scratchcnn.apps": 4}
TOOLS = 5  # the command-line tools (scratchcnn/train.py, ...) and the package itself, which wires nn and engine


def _rank(module: str) -> int:
    for prefix, rank in sorted(RANKS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return TOOLS if module.startswith("scratchcnn") else -1  # -1: outside the project (numpy, ...)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str):
    """Every module an ``import``/``from ... import`` in ``path`` names, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # "from scratchcnn import apps" imports scratchcnn.apps: count the names as submodules too
            yield node.lineno, [base] + [f"{base}.{alias.name}" for alias in node.names]


def upward_imports():
    found = []
    for path in sorted([*ROOT.joinpath("scratchcnn").rglob("*.py"), *ROOT.joinpath("kernels").rglob("*.py")]):
        module = _module_name(path)
        own = _rank(module)
        for line, names in _imports(path, module):
            for name in names:
                if _rank(name) > own:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {module} (rank {own}) imports {name} "
                                 f"(rank {_rank(name)})")
                    break
    return found


def test_no_module_imports_upward():
    assert upward_imports() == []


def test_the_walk_sees_an_upward_import(tmp_path, monkeypatch):
    """The check can fail: an nn module importing the engine, even inside a function, is caught."""
    fake = tmp_path / "scratchcnn" / "nn" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from scratchcnn.engine.training import fit\n    return fit\n")
    assert [names for _, names in _imports(fake, "scratchcnn.nn.bad")] == [
        ["scratchcnn.engine.training", "scratchcnn.engine.training.fit"]]
    assert _rank("scratchcnn.engine.training") > _rank("scratchcnn.nn.bad")
    assert _rank("scratchcnn.nn.layers") == 1 and _rank("kernels.numba_cpu") == 0 and _rank("numpy") == -1
    assert _rank("scratchcnn.train") == TOOLS and _rank("scratchcnn.errors") == 0
