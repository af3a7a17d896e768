"""Shared fixtures: the shipped samples, the public corpora, and a small trained model."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import imapclient
import pytest
import structlog
import yaml

from spamd.core import message as message_lib
from spamd.core.features import DEFAULT_CHANNELS
from spamd.daemon.service import LiveModel, Service
from spamd.daemon.watcher import FolderWatcher
from spamd.ops import config as config_lib
from spamd.ops.config import Account, Config
from spamd.store.state import State
from spamd.training import corpus
from spamd.training import model as model_lib
from tests import sandbox

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SHIPPED_MODEL = ROOT / "models" / "default.joblib"
CORPORA = ROOT.parent / "shared" / "corpora"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("spamd reliability suite (tests/reliability)")
    group.addoption(
        "--long", action="store_true", help="long mode: 50 crash trials, a 30-minute soak, ..."
    )
    group.addoption(
        "--report", metavar="FILE", help="append the suite's figures to FILE as JSON lines"
    )


def message(subject: str, body: str, sender: str = "someone@example.org", **headers: str) -> bytes:
    """A minimal RFC 822 message, for tests that need mail of a certain shape."""
    lines = [f"From: {sender}", f"Subject: {subject}", "Message-ID: <t@example.org>"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@pytest.fixture
def parser_breaker(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A header line that makes the parser fail (RecursionError) on a message that
    starts with it: nothing known does so any more, so the unreadable path is tested
    by injecting a failure."""
    marker = b"X-Break-Parser: 1\r\n"
    parse = message_lib._parse

    def failing(raw: bytes, *args: float) -> message_lib.ParsedMessage:
        if raw.startswith(marker):
            raise RecursionError
        return parse(raw, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(message_lib, "_parse", failing)
    return marker


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not (CORPORA / "spamassassin_public").is_dir():
        pytest.skip(f"public corpora not found at {CORPORA}")
    return CORPORA


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the shipped samples, saved with its metadata."""
    examples = corpus.load_examples([SAMPLES], DEFAULT_CHANNELS, 1 << 18)
    trained = model_lib.train(examples.features, examples.labels, folds=3, sources=["samples"])
    path = tmp_path_factory.mktemp("model") / "small.joblib"
    model_lib.save(trained, path)
    return path


# -- a real Dovecot on 127.0.0.1 ------------------------------------------------


@pytest.fixture(scope="session")
def dovecot() -> Iterator[sandbox.Dovecot]:
    """One private Dovecot for the session; each test gets its own user (see `mailbox`)."""
    with sandbox.running({}) as server:
        yield server


class Box:
    """A test user's mailbox on a Dovecot, seen through a second client (not spamd)."""

    def __init__(self, server: sandbox.Dovecot, user: str, password: str, tmp: Path) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.tmp = tmp
        self._client: imapclient.IMAPClient | None = None

    def settings(self, **overrides: object) -> dict[str, object]:
        """An account entry for a spamd configuration (plain IMAP on loopback)."""
        entry: dict[str, object] = {
            "name": self.user,
            "host": "127.0.0.1",
            "port": self.server.imap_port,
            "tls": "none",
            "username": self.user,
            "password": self.password,
            "timeout": 10,
        }
        entry.update(overrides)
        return entry

    @property
    def client(self) -> imapclient.IMAPClient:
        if self._client is None:
            self._client = imapclient.IMAPClient("127.0.0.1", self.server.imap_port, ssl=False)
            self._client.login(self.user, self.password)
        return self._client

    def reconnect(self) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.logout()
            with contextlib.suppress(Exception):
                self._client.shutdown()
            self._client = None

    def append(self, raw: bytes, folder: str = "INBOX", flags: Sequence[str] = ()) -> None:
        self.client.append(folder, raw, flags=list(flags))

    def subjects(self, folder: str) -> list[str]:
        self.client.select_folder(folder, readonly=True)
        uids = self.client.search("ALL")
        if not uids:
            return []
        data = self.client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        out = []
        for item in data.values():
            header = next(v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
            out.append(header.decode().partition(":")[2].strip())
        return sorted(out)

    def count(self, folder: str) -> int:
        return int(self.client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])

    def total(self) -> int:
        """Messages in every folder, so a test can prove none was lost or duplicated."""
        return sum(self.count(str(name)) for _, _, name in self.client.list_folders())


_users = itertools.count()


@pytest.fixture
def mailbox(dovecot: sandbox.Dovecot, tmp_path: Path) -> Iterator[Box]:
    with contextlib.closing(new_box(dovecot, f"user{next(_users)}", tmp_path)) as box:
        yield box


def new_box(server: sandbox.Dovecot, user: str, tmp: Path) -> Box:
    """A new user on this Dovecot (password ``pw-USER``), logged in once Dovecot knows it."""
    server.set_users({**server.users, user: f"pw-{user}"})
    box = Box(server, user, f"pw-{user}", tmp)
    # Dovecot notices a changed passwd-file within about a second: wait until it has.
    wait_until(lambda: can_log_in(box), timeout=5, what=f"Dovecot to know {user}")
    return box


def can_log_in(box: Box) -> bool:
    try:
        box.client  # noqa: B018 - logs in
    except imapclient.exceptions.LoginError:
        box.close()
        return False
    return True


def spamd_config(tmp: Path, *accounts: dict[str, object], **top: object) -> Config:
    data: dict[str, object] = {
        "state_dir": str(tmp / "state"),
        "model": {"path": str(SHIPPED_MODEL)},
        "accounts": list(accounts),
        "housekeeping_interval": 3600,
    }
    data.update(top)
    return config_lib.parse(data, tmp / "spamd.yaml", SHIPPED_MODEL)


def example_config(tmp_path: Path) -> Path:
    """config.example.yaml with its state_dir and password file in `tmp_path`."""
    text = (ROOT / "config.example.yaml").read_text()
    assert "state_dir: /var/lib/spamd " in text and "cat /etc/spamd/alice.password" in text
    (tmp_path / "alice.password").write_text("secret\n")
    config = tmp_path / "spamd.yaml"
    config.write_text(
        text.replace("/var/lib/spamd", str(tmp_path / "state")).replace(
            "/etc/spamd/alice.password", str(tmp_path / "alice.password")
        )
    )
    return config


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


SPAM = sorted((SAMPLES / "spam").glob("*.eml"))
# The known miss (see test_model) is left out where a test needs the model to be right.
HAM = [p for p in sorted((SAMPLES / "ham").glob("*.eml")) if p.name != "04-invoice-question.eml"]


class Events(list[dict[str, object]]):
    """A structlog processor that keeps every event, for assertions on logs."""

    def __call__(self, _: object, method: str, event: MutableMapping[str, Any]) -> str:
        self.append({**event, "level": method})
        raise structlog.DropEvent

    def named(self, name: str) -> list[dict[str, object]]:
        return [e for e in self if e.get("event") == name]

    @staticmethod
    def logger(events: Events | None = None) -> Any:
        return structlog.wrap_logger(None, processors=[events if events is not None else Events()])


def synced(service: Service) -> bool:
    """Every watcher (each watched folder's and the Junk watcher) has synced once: mail
    delivered from now on is new to all of them, not "existing" mail left alone."""
    return all(w.health.last_sync for w in (*service.watchers, *service.junk_watchers))


@contextlib.contextmanager
def running_service(config: Config, **options: object) -> Iterator[tuple[Service, Events]]:
    events = Events()
    service = Service(config, log=Events.logger(events), **options)  # type: ignore[arg-type]
    service.start()
    try:
        yield service, events
    finally:
        service.stop()


def inbox_watcher(config: Config, state: State, connect: Callable[[Account], Any]) -> FolderWatcher:
    """A watcher of INBOX of the config's first account, outside a service (to drive by hand)."""
    return FolderWatcher(
        config.accounts[0],
        "INBOX",
        connect=connect,
        model=LiveModel(config.model_path, Events.logger()),
        state=state,
        log=Events.logger(),
        stop=threading.Event(),
    )


def daemon_config(directory: Path, accounts: Sequence[dict[str, Any]], **settings: object) -> Path:
    """`directory`/spamd.yaml for `spamd run`: state in `directory`, the shipped model,
    these accounts, JSON logs; `settings` add to or replace the top-level keys."""
    config_file = directory / "spamd.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(directory / "state"),
                "model": {"path": str(SHIPPED_MODEL)},
                "accounts": list(accounts),
                "log": {"format": "json"},
                **settings,
            }
        )
    )
    return config_file


@contextlib.contextmanager
def daemon(config_file: Path, **env: str) -> Iterator[list[str]]:
    """`spamd run` in a child process (with `env` added to ours); yields the lines it
    has printed so far, and stops it on the way out."""
    output: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "spamd", "run", "--config", str(config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )  # fmt: skip
    reader = threading.Thread(
        target=lambda: output.extend(line.decode() for line in proc.stdout or []), daemon=True
    )
    reader.start()
    try:
        yield output
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        if proc.stdout:
            proc.stdout.close()
