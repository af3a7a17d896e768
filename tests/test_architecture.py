"""The layers of the package, checked by walking the imports.

    core      pure: reading mail, features, scoring, decisions (no I/O, no adapter)
    training  scikit-learn: fitting, evaluating, retraining
    store     the state database and model versions on disk
    ops       configuration, logs, metrics, the admin page, systemd
    mail      the mail ports and the IMAP adapter
    daemon    the service and the folder watchers
    demo      `spamd demo` and its private Dovecot
    cli       the command line, which may use everything

A layer imports only from itself and the layers listed for it in `ALLOWED`;
`spamd.errors` (the one exception tree) and `spamd.__version__` are everyone's.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import spamd

PACKAGE = Path(spamd.__file__).parent
SHARED = {"spamd", "spamd.errors", "spamd.__version__"}
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "store": {"core"},
    "ops": {"core"},
    "training": {"core", "store"},
    "mail": {"core", "ops"},
    "daemon": {"core", "store", "ops", "mail", "training"},
    "demo": {"core", "ops", "mail", "daemon"},
    "cli": {"core", "store", "ops", "mail", "daemon", "training", "demo"},
    "__main__": {"cli"},
}
# Outside the package: what only an adapter may import.
IO_LIBRARIES = {"imapclient", "imaplib", "socket", "sqlite3", "apscheduler", "structlog", "http"}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "spamd":  # `from spamd import cli`: the module is the name
                names.update(f"spamd.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str:
    """`spamd.core.scorer` -> `core`; `spamd.cli` -> `cli`."""
    return module.split(".")[1]


def modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts in {("__init__",), ("errors",)}:
            continue
        found.append(".".join(("spamd", *parts)).removesuffix(".__init__"))
    return found


def path_of(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else (PACKAGE / relative).with_suffix(".py")


def test_every_module_is_in_a_known_layer() -> None:
    assert {layer_of(m) for m in modules()} <= set(ALLOWED)


@pytest.mark.parametrize("module", modules())
def test_imports_follow_the_layers(module: str) -> None:
    layer = layer_of(module)
    ours = {m for m in imports_of(path_of(module)) if m.split(".")[0] == "spamd"} - SHARED
    bad = {m for m in ours if layer_of(m) not in ALLOWED[layer] | {layer}}
    assert not bad, f"{module} ({layer}) imports {sorted(bad)}: not below it"


@pytest.mark.parametrize("module", [m for m in modules() if layer_of(m) == "core"])
def test_the_core_does_no_io(module: str) -> None:
    bad = {m for m in imports_of(path_of(module)) if m.split(".")[0] in IO_LIBRARIES}
    assert not bad, f"{module} imports {sorted(bad)}"


def test_only_the_imap_adapter_imports_the_imap_library() -> None:
    importers = {
        m
        for m in modules()
        if any(i.split(".")[0] in {"imapclient", "imaplib"} for i in imports_of(path_of(m)))
    }
    assert importers == {"spamd.mail.imap"}


def imported_modules(path: Path) -> set[str]:
    """`imports_of`, with `from spamd.mail import imap` counted as `spamd.mail.imap`."""
    names = imports_of(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spamd"):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_daemon_knows_a_mailbox_by_its_port() -> None:
    """The watchers and the bootstrap use `spamd.mail.ports` (the `Mailbox` protocol
    and its values); only the service, which builds the connections, names the adapter."""
    daemon = [m for m in modules() if layer_of(m) == "daemon"]
    adapter_users = {m for m in daemon if "spamd.mail.imap" in imported_modules(path_of(m))}
    assert adapter_users <= {"spamd.daemon.service"}
    for module in ("spamd.daemon.watcher", "spamd.daemon.bootstrap"):
        assert "spamd.mail.ports" in imports_of(path_of(module)), module


def test_the_mail_port_is_pure() -> None:
    """The port is types only: no I/O, and nothing of the adapter or the config."""
    imported = imports_of(path_of("spamd.mail.ports"))
    assert not {m for m in imported if m.split(".")[0] in IO_LIBRARIES}
    assert {m for m in imported if m.startswith("spamd.")} <= {"spamd.core.layout"}


def test_the_bootstrap_does_not_import_the_service() -> None:
    """The service (the composition root) uses the bootstrap, not the other way round."""
    assert "spamd.daemon.service" not in imported_modules(path_of("spamd.daemon.bootstrap"))


@pytest.mark.parametrize("layer", ["core", "store", "mail", "daemon", "ops"])
def test_the_scoring_path_needs_no_scikit_learn(layer: str) -> None:
    """The daemon's layers load models without unpickling and without scikit-learn."""
    for module in (m for m in modules() if layer_of(m) == layer):
        imported = imports_of(path_of(module))
        assert not {m for m in imported if m.split(".")[0] in {"sklearn", "joblib"}}, module


def test_the_daemon_process_does_not_load_scikit_learn() -> None:
    """About 110 MB of memory the daemon does not need: checked in a fresh interpreter."""
    code = (
        "import sys, spamd.cli, spamd.daemon.service; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'joblib')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_checker_sees_imports_and_would_refuse_an_upward_one(tmp_path: Path) -> None:
    assert "spamd.core.message" in imports_of(PACKAGE / "core" / "features.py")
    upward = tmp_path / "upward.py"
    upward.write_text("from spamd.daemon import service\nfrom spamd import cli\n")
    imported = imports_of(upward)
    assert {"spamd.daemon", "spamd.cli"} <= imported
    assert layer_of("spamd.daemon") not in ALLOWED["core"]
