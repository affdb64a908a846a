"""The import graph: a typed ground floor (faceray/), three sibling stages on it, the demo and the front door on top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "train", "serve")
PACKAGES = ("faceray", *STAGES, "cluster")
# The front doors may import up: the CLI dispatches to every stage, and `faceray.FaceAnalyzer` (a lazy module
# __getattr__) is the Python API of serving.
FRONT_DOORS = {"faceray/cli.py": set(PACKAGES), "faceray/__init__.py": {"serve"}}


def imported_packages(path: Path) -> set[str]:
    """The top-level project packages a module imports, at any depth of its code (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)
    return found


def test_no_stage_imports_another_and_nothing_imports_up_from_the_core():
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            imported = imported_packages(path) - {package}
            if package == "faceray":
                allowed = FRONT_DOORS.get(relative, set())
            elif package in STAGES:
                allowed = {"faceray"}
            else:  # cluster/: jobs and the demo, on top of everything
                allowed = set(PACKAGES)
            problems += [f"{relative} imports {name}" for name in sorted(imported - allowed)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("def f():\n    from train.model_dir import x\n    import serve.app\n")
    assert imported_packages(module) == {"train", "serve"}
