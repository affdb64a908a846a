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


def project_package(module: str) -> str | None:
    """Which of PACKAGES an imported module belongs to: faceray.<stage>... is that stage, other faceray... is the
    core; a bare stage name (the old top-level packages, not installed any more) is reported as "top-level <name>"."""
    parts = module.split(".")
    if parts[0] == "faceray":
        return parts[1] if len(parts) > 1 and parts[1] in STAGES + ("cluster",) else "faceray"
    if parts[0] in PACKAGES:
        return f"top-level {parts[0]}"
    return None


def imported_packages(path: Path) -> set[str]:
    """The project packages a module imports, at any depth of its code (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(package for package in map(project_package, names) if package)
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


def test_the_check_sees_lazy_imports_and_the_old_top_level_names(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "def f():\n    from faceray.train.model_dir import x\n    import faceray.serve.app\n    import ingest\n"
    )
    assert imported_packages(module) == {"train", "serve", "top-level ingest"}


def test_nothing_in_the_repository_imports_the_old_top_level_names():
    """Tests and benchmarks too: a second copy of a stage under its old name would hold other classes."""
    problems = []
    for folder in (*PACKAGES, "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            problems += [
                f"{path.relative_to(ROOT)} imports {name}"
                for name in sorted(imported_packages(path))
                if name.startswith("top-level ")
            ]
    assert not problems, "\n".join(problems)


def test_the_wheel_installs_one_name(tmp_path):
    """The wheel holds faceray/ only: the stages inside it, their data files with them."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in PACKAGES:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = tmp_path.glob("faceray-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"faceray"}
    for expected in (
        "faceray/serve/app.py",
        "faceray/serve/serve_config.yaml",
        "faceray/serve/web/index.html",
        "faceray/train/spaces/report.yaml",
        "faceray/ingest/sources/imdb_wiki.py",
        "faceray/cluster/jobs.py",
        "faceray/haproxy_loopback.sh",
    ):
        assert expected in names, expected
