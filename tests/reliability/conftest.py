"""Fixtures of the reliability suite: a fault proxy, test mail, an inventory of folders."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spamd.core.scorer import Scorer, load
from spamd.store.state import Decision, State
from tests import sandbox
from tests.conftest import HAM, SHIPPED_MODEL, SPAM, Box
from tests.reliability.proxy import FaultProxy

Report = Callable[..., None]


@pytest.fixture(scope="session")
def long_mode(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> Report:
    """Record a figure: printed (pytest -s shows it) and appended to --report FILE."""
    target = request.config.getoption("--report")

    def write(name: str, **figures: object) -> None:
        line = json.dumps({"test": name, **figures}, sort_keys=True)
        print(f"\nfigures: {line}")
        if target:
            with Path(target).open("a") as out:
                out.write(line + "\n")

    return write


@pytest.fixture
def proxy(dovecot: sandbox.Dovecot) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(dovecot.imap_port)
    yield fault_proxy
    fault_proxy.close()


# These tests check where mail ends up against the model's own verdicts (`variant`):
# an empty account that calibrates (the default) is cautious and flags the less certain
# spam instead of moving it (tests/test_personal.py), so they switch calibration off.
MODEL_VERDICTS: dict[str, object] = {"calibrate": False}


def through(box: Box, proxy: FaultProxy, **extra: object) -> dict[str, object]:
    """Account settings that reach the box's server through the proxy, with short timeouts."""
    return box.settings(**{"port": proxy.port, "timeout": 3, **MODEL_VERDICTS, **extra})


SAMPLES = [(p, "spam") for p in SPAM] + [(p, "ham") for p in HAM]
_MESSAGE_ID = re.compile(rb"^Message-ID:.*\r?\n", re.I | re.M)


def variant(n: int) -> tuple[bytes, bool]:
    """Test message n (a sample with its own Message-ID) and whether the model junks it.

    Only the Message-ID differs between variants of a sample, and the model never
    reads it, so every variant of a sample gets the sample's verdict."""
    path, _ = SAMPLES[n % len(SAMPLES)]
    raw = _MESSAGE_ID.sub(b"", path.read_bytes())
    return f"Message-ID: <reliability-{n}@spamd.test>\r\n".encode() + raw, _junked(path)


@functools.cache
def _junked(path: Path) -> bool:
    model = _model()
    return model.is_spam(model.score(path.read_bytes()))


@functools.cache
def _model() -> Scorer:
    return load(SHIPPED_MODEL)


def inventory(box: Box) -> dict[str, Counter[tuple[str, str]]]:
    """Folder -> (Message-ID, SHA-256 of the message) -> how many copies."""
    client = box.client
    out: dict[str, Counter[tuple[str, str]]] = {}
    for _, _, name in client.list_folders():
        folder = str(name)
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        found: Counter[tuple[str, str]] = Counter()
        for start in range(0, len(uids), 500):
            data = client.fetch(uids[start : start + 500], ["BODY.PEEK[]"])
            for item in data.values():
                raw = item[b"BODY[]"]
                found[(_message_id(raw), hashlib.sha256(raw).hexdigest())] += 1
        client.unselect_folder()
        out[folder] = found
    return out


def _message_id(raw: bytes) -> str:
    found = re.search(rb"^Message-ID:\s*(<[^>]*>)", raw, re.I | re.M)
    return found.group(1).decode() if found else ""


def assert_each_once_and_spam_in_junk(
    box: Box, messages: dict[int, tuple[bytes, bool]], junk: str = "Junk"
) -> None:
    """Every message exists exactly once across all folders, in `junk` iff the model junks
    it (`junk="INBOX"` where spam is flagged in place)."""
    where: dict[str, list[str]] = {}
    copies: Counter[str] = Counter()
    for folder, found in inventory(box).items():
        for (message_id, _), n in found.items():
            copies[message_id] += n
            where.setdefault(message_id, []).append(folder)
    for raw, junked in messages.values():
        message_id = _message_id(raw)
        assert copies[message_id] == 1, f"{message_id}: {copies[message_id]} copies in {where}"
        assert where[message_id] == [junk if junked else "INBOX"], (message_id, where)
    assert sum(copies.values()) == len(messages), "messages nobody appended"


def all_decided(state_file: Path, account: str, messages: dict[int, tuple[bytes, bool]]) -> bool:
    """Whether spamd has decided every one of these messages and finished acting on it."""
    decisions = _decisions(state_file, account)
    decided = {d.message_id for d in decisions}
    settled = all(d.status in ("done", "gone") for d in decisions)
    return settled and decided >= {_message_id(raw) for raw, _ in messages.values()}


def assert_decided_once(
    state_file: Path, account: str, messages: dict[int, tuple[bytes, bool]]
) -> None:
    """The state store holds one finished decision per message, none pending or half-copied."""
    decisions = _decisions(state_file, account)
    decided = Counter(d.message_id for d in decisions)
    wanted = {_message_id(raw) for raw, _ in messages.values()}
    assert set(decided) >= wanted
    assert all(decided[m] == 1 for m in wanted), [m for m in wanted if decided[m] != 1]
    assert {d.status for d in decisions} <= {"done", "gone"}


def _decisions(state_file: Path, account: str) -> list[Decision]:
    state = State(state_file)
    try:
        return state.decisions(account, limit=10**6)
    finally:
        state.close()
