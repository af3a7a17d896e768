"""Model versions under ``state_dir/models``: which one is live, and the history.

The model named in the configuration is the *base*. Each retrain writes a
version directory ``models/<version>/`` (``model.npz`` and ``model.json``, the
files `scorer.load` reads) and, when the guard lets it through, names it in
``models/LIVE``. Promotion and rollback replace that one small file atomically;
the daemon's `service.LiveModel` notices and swaps without a restart.

A version remembers the base it was trained from: when the admin replaces the
base model file on disk, versions built on the old one stop being live.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spamd.core import scorer as scorer_lib
from spamd.core.scorer import Metadata
from spamd.errors import ModelError, SpamdError

BASE = "base"
KEEP_VERSIONS = 20  # older retrained versions are deleted (never the live one)


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    path: Path  # what `scorer.load` takes
    metadata: Metadata | None  # None when unreadable
    live: bool
    refused: str  # why the guard refused it; "" if it passed


class ModelStore:
    def __init__(self, state_dir: Path, base: Path) -> None:
        self.root = state_dir / "models"
        self.base = base

    def path(self, name: str) -> Path:
        return self.base if name == BASE else self.root / name / "model.joblib"

    def live_name(self) -> str:
        """The live version's name; `BASE` when none, or when it was built on another base."""
        try:
            name = (self.root / "LIVE").read_text().strip()
        except OSError:
            return BASE
        if name == BASE or not (self.root / name / "model.json").exists():
            return BASE
        try:
            parent = scorer_lib.read_metadata(self.path(name)).parent
            base = scorer_lib.read_metadata(self.base).weights_sha256
        except SpamdError:
            return BASE
        return name if parent == base else BASE

    def live_path(self) -> Path:
        return self.path(self.live_name())

    def add(self, directory: Path, refused: str) -> str:
        """Keep a trained candidate (a directory with model.npz/json) as a version."""
        meta = scorer_lib.read_metadata(directory / "model.joblib")
        name = meta.weights_sha256[:12]
        target = self.root / name
        if target.exists():
            shutil.rmtree(directory)
        else:
            directory.replace(target)
        if refused:
            (target / "REFUSED").write_text(refused + "\n")
        self._prune()
        return name

    def promote(self, name: str) -> None:
        if name != BASE and not (self.root / name / "model.json").exists():
            known = ", ".join(v.name for v in self.versions())
            raise ModelError(f"no model version {name!r} (known: {known})", path=self.root)
        history = self._history()
        self._write("HISTORY", "".join(f"{n}\n" for n in [*history, name][-100:]))
        self._write("LIVE", name + "\n")

    def rollback(self, name: str | None = None) -> str:
        """Make `name` live, or the version live before the current one."""
        if name is None:
            current = self.live_name()
            earlier = [n for n in self._history() if n != current]
            name = earlier[-1] if earlier else BASE
        self.promote(name)
        return name

    def versions(self) -> list[Version]:
        live = self.live_name()
        found = [self._version(BASE, live)]
        if self.root.is_dir():
            dirs = [d for d in self.root.iterdir() if (d / "model.json").exists()]
            for d in sorted(dirs, key=lambda d: d.stat().st_mtime):
                found.append(self._version(d.name, live))
        return found

    def candidate_dir(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix=".candidate-"))

    def _version(self, name: str, live: str) -> Version:
        path = self.path(name)
        try:
            meta: Metadata | None = scorer_lib.read_metadata(path)
        except SpamdError:
            meta = None
        refused_file = path.parent / "REFUSED"
        refused = refused_file.read_text().strip() if name != BASE and refused_file.exists() else ""
        return Version(name, path, meta, name == live, refused)

    def _history(self) -> list[str]:
        try:
            return (self.root / "HISTORY").read_text().split()
        except OSError:
            return []

    def _prune(self) -> None:
        live = self.live_name()
        retrained = [v for v in self.versions() if v.name != BASE]
        for old in retrained[:-KEEP_VERSIONS]:
            if old.name != live:
                shutil.rmtree(old.path.parent, ignore_errors=True)

    def _write(self, name: str, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(self.root / name)


def describe(version: Version) -> dict[str, object]:
    """One line of `spamd model list`, as data."""
    meta = version.metadata
    return {
        "version": version.name if version.name != BASE else f"base ({version.path})",
        "live": version.live,
        "trained_at": meta.trained_at if meta else "?",
        "ham": meta.ham if meta else 0,
        "spam": meta.spam if meta else 0,
        "threshold": round(meta.threshold, 4) if meta else None,
        "metrics": {k: round(v, 4) for k, v in meta.metrics.items()} if meta else {},
        "refused": version.refused,
    }


def to_json(versions: list[Version]) -> str:
    return json.dumps([describe(v) for v in versions], indent=2)
