"""The pure core must not import adapters: checked by walking the imports."""

from __future__ import annotations

import ast
from pathlib import Path

import spamd

PURE = {"message", "features", "metrics", "model"}
ADAPTER_MODULES = {
    "imapclient",
    "imaplib",
    "socket",
    "sqlite3",
    "apscheduler",
    "structlog",
    "spamd.cli",
    "spamd.corpus",
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


def test_checker_sees_imports() -> None:
    assert "spamd.message" in imports_of(Path(spamd.__file__).parent / "features.py")
