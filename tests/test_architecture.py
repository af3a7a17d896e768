"""The pure core must not import adapters: checked by walking the imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import spamd

PURE = {
    "message",
    "features",
    "metrics",
    "model",
    "scorer",
    "policy",
    "learning",
    "decisions",
    "layout",
}
ADAPTER_MODULES = {
    "imapclient",
    "imaplib",
    "socket",
    "sqlite3",
    "apscheduler",
    "structlog",
    "spamd.cli",
    "spamd.corpus",
    "spamd.imap",
    "spamd.state",
    "spamd.service",
    "spamd.watcher",
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pure_core_imports_no_adapter() -> None:
    package = Path(spamd.__file__).parent
    for name in PURE:
        imported = imports_of(package / f"{name}.py")
        bad = {m for m in imported if m.split(".")[0] in ADAPTER_MODULES or m in ADAPTER_MODULES}
        assert not bad, f"spamd/{name}.py imports {bad}"


def test_only_imap_py_imports_the_imap_library() -> None:
    package = Path(spamd.__file__).parent
    importers = {
        path.name
        for path in package.glob("*.py")
        if any(m.split(".")[0] in {"imapclient", "imaplib"} for m in imports_of(path))
    }
    assert importers == {"imap.py"}


def test_the_scoring_path_needs_no_scikit_learn() -> None:
    """The daemon's modules load models without unpickling and without scikit-learn."""
    package = Path(spamd.__file__).parent
    for name in ("scorer", "watcher", "service", "imap", "state", "policy", "config"):
        imported = imports_of(package / f"{name}.py")
        assert not {m for m in imported if m.split(".")[0] in {"sklearn", "joblib"}}, name
        assert "spamd.model" not in imported, name


def test_the_daemon_process_does_not_load_scikit_learn() -> None:
    """About 110 MB of memory the daemon does not need: checked in a fresh interpreter."""
    code = (
        "import sys, spamd.cli, spamd.service; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'joblib')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_checker_sees_imports() -> None:
    assert "spamd.message" in imports_of(Path(spamd.__file__).parent / "features.py")
