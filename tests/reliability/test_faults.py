"""Connection faults and server-side trouble under a running spamd, against the real Dovecot."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spamd.store.state import state_path
from tests import sandbox
from tests.conftest import Box, new_box, running_service, spamd_config, wait_until
from tests.reliability.conftest import (
    MODEL_VERDICTS,
    Report,
    all_decided,
    assert_decided_once,
    assert_each_once_and_spam_in_junk,
    through,
    variant,
)
from tests.reliability.proxy import FaultProxy

BATCH = 8  # messages per fault test: both verdicts, several of each


def deliver(box: Box, first: int, count: int = BATCH) -> dict[int, tuple[bytes, bool]]:
    messages = {n: variant(n) for n in range(first, first + count)}
    for raw, _ in messages.values():
        box.append(raw)
    return messages


def settled(box: Box, messages: dict[int, tuple[bytes, bool]]) -> bool:
    return box.count("Junk") == sum(junked for _, junked in messages.values())


# (where, what the client sends, action): cut before the server sees the command,
# cut after it acted but before the client hears back, or stall past the timeout.
PHASES = [
    ("login", r"LOGIN", "cut"),
    ("fetch", r"UID FETCH .*BODY\.PEEK", "cut"),
    ("fetch-stalled", r"UID FETCH .*BODY\.PEEK", "stall"),
    ("move", r"UID MOVE", "cut"),
    ("move-answer-lost", r"UID MOVE", "cut_after"),
    ("idle", r" IDLE\r\n", "cut_after"),
]


@pytest.mark.parametrize(("phase", "pattern", "action"), PHASES, ids=[p[0] for p in PHASES])
def test_a_fault_in_each_phase_is_survived(  # noqa: PLR0917 - fixtures and parameters
    mailbox: Box, proxy: FaultProxy, tmp_path: Path, phase: str, pattern: str, action: str
) -> None:
    config = spamd_config(tmp_path, through(mailbox, proxy), learning={"enabled": False})
    seconds = 4.0 if action == "stall" else 0.2  # a stall outlasts the 3 s command timeout
    if phase == "login":  # the first two logins fail
        proxy.arm(pattern, action, times=2, seconds=seconds)
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.watchers), timeout=30)
        if phase != "login":
            proxy.arm(pattern, action, seconds=seconds)
        # Half before the fault fires (it may fire while they are handled, or in the
        # IDLE after them), half after: all must end up where they belong.
        messages = deliver(mailbox, 0, BATCH // 2)
        wait_until(lambda: proxy.armed() == 0, timeout=20, what=f"the {phase} fault to fire")
        messages |= deliver(mailbox, BATCH // 2, BATCH // 2)
        wait_until(lambda: settled(mailbox, messages), timeout=45, what=f"recovery from {phase}")
        # Ham stays where it is whether decided or not: wait for the decisions too.
        wait_until(lambda: all_decided(state_path(config), mailbox.user, messages), timeout=30)
    assert events.named("connected")[1:] or events.named("connection_failed")
    assert_each_once_and_spam_in_junk(mailbox, messages)
    assert_decided_once(state_path(config), mailbox.user, messages)


@pytest.fixture(scope="module")
def without_move() -> Iterator[sandbox.Dovecot]:
    with sandbox.running({}, hide=("MOVE",)) as server:
        yield server


FALLBACK = [
    ("copy", r"UID COPY", "cut"),
    ("copy-answer-lost", r"UID COPY", "cut_after"),
    ("store-answer-lost", r"UID STORE", "cut_after"),
    ("expunge-answer-lost", r"UID EXPUNGE", "cut_after"),
]


@pytest.mark.parametrize(("phase", "pattern", "action"), FALLBACK, ids=[p[0] for p in FALLBACK])
def test_a_fault_in_the_copy_store_expunge_fallback_is_survived(
    without_move: sandbox.Dovecot, tmp_path: Path, phase: str, pattern: str, action: str
) -> None:
    box = new_box(without_move, f"fallback-{phase}", tmp_path)
    proxy = FaultProxy(without_move.imap_port)
    try:
        config = spamd_config(tmp_path, through(box, proxy), learning={"enabled": False})
        with running_service(config) as (service, _events):
            wait_until(lambda: all(w.health.last_sync for w in service.watchers))
            proxy.arm(pattern, action)
            messages = deliver(box, 100)
            wait_until(lambda: settled(box, messages), timeout=45, what=f"recovery from {phase}")
            wait_until(lambda: box.count("INBOX") == BATCH - box.count("Junk"))
        assert proxy.armed() == 0, "the fault never fired"
        assert_each_once_and_spam_in_junk(box, messages)
    finally:
        proxy.close()
        box.close()


def test_dovecot_restarted_under_a_running_spamd(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(sandbox.running({"r": "p"}))
        box = stack.enter_context(contextlib.closing(Box(server, "r", "p", tmp_path)))
        settings = box.settings(timeout=3, **MODEL_VERDICTS)
        config = spamd_config(tmp_path, settings, learning={"enabled": False})
        with running_service(config) as (service, _):
            wait_until(lambda: all(w.health.last_sync for w in service.watchers))
            messages = deliver(box, 200, 4)
            server.restart(pause=1.0)  # perhaps mid-work: the mail is already there
            box.reconnect()
            messages |= deliver(box, 204, 4)
            wait_until(lambda: settled(box, messages), timeout=45)
        assert_each_once_and_spam_in_junk(box, messages)


def test_a_refused_move_leaves_the_message_and_is_retried(
    mailbox: Box, proxy: FaultProxy, tmp_path: Path
) -> None:
    config = spamd_config(tmp_path, through(mailbox, proxy), learning={"enabled": False})
    spam = next(n for n in range(20) if variant(n)[1])
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.watchers))
        proxy.arm(r"UID MOVE", "refuse", times=1000)  # refused until disarmed
        messages = deliver(mailbox, spam, 1)
        wait_until(lambda: events.named("move_failed"), what="the refused MOVE")
        time.sleep(0.5)
        assert mailbox.count("INBOX") == 1 and mailbox.count("Junk") == 0  # left where it was
        proxy.disarm()
        messages |= deliver(mailbox, 300, 1)  # the next sync retries the move
        wait_until(lambda: settled(mailbox, messages), timeout=20)
    assert "OVERQUOTA" in str(events.named("move_failed")[0]["error"])
    assert_each_once_and_spam_in_junk(mailbox, messages)


@pytest.mark.parametrize("how", ["deleted", "renamed"])
def test_junk_deleted_or_renamed_while_running_is_made_again(
    mailbox: Box, tmp_path: Path, how: str
) -> None:
    # "Spam", not the sandbox's "Junk": Dovecot itself would bring back an auto folder.
    settings = mailbox.settings(timeout=3, junk_folder="Spam", **MODEL_VERDICTS)
    config = spamd_config(tmp_path, settings, learning={"enabled": False})
    spam = [n for n in range(40) if variant(n)[1]]
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.watchers))
        deliver(mailbox, spam[0], 1)
        wait_until(lambda: mailbox.count("Spam") == 1)
        if how == "deleted":
            mailbox.client.delete_folder("Spam")  # with the message in it: the user's choice
        else:
            mailbox.client.rename_folder("Spam", "Old Spam")
        later = {n: variant(n) for n in spam[1:3]}
        for raw, _ in later.values():
            mailbox.append(raw)
        wait_until(lambda: "Spam" in _folders(mailbox) and mailbox.count("Spam") == 2, timeout=30)
    assert events.named("junk_missing")
    assert mailbox.count("INBOX") == 0
    if how == "renamed":
        assert mailbox.count("Old Spam") == 1
    first_lines = sorted(raw.split(b"\r\n", 1)[0] for raw, _ in later.values())
    assert sorted(_message_ids(mailbox, "Spam")) == first_lines


def _folders(box: Box) -> set[str]:
    return {str(name) for _, _, name in box.client.list_folders()}


def _message_ids(box: Box, folder: str) -> list[bytes]:
    box.client.select_folder(folder, readonly=True)
    data = box.client.fetch(box.client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    box.client.unselect_folder()
    return [
        next(v for k, v in item.items() if k.startswith(b"BODY[")).strip() for item in data.values()
    ]


def test_a_huge_mailbox_on_first_start_costs_no_fetch(
    mailbox: Box, proxy: FaultProxy, tmp_path: Path, long_mode: bool, report: Report
) -> None:
    count = 100_000 if long_mode else 20_000
    raws = [
        b"Subject: old %d\r\nMessage-ID: <old-%d@x>\r\n\r\nkept\r\n" % (i, i) for i in range(count)
    ]
    mailbox.server.seed_maildir(mailbox.user, raws)
    config = spamd_config(
        tmp_path, through(mailbox, proxy, timeout=60), learning={"enabled": False}
    )
    started = time.monotonic()
    with running_service(config) as (_service, events):
        wait_until(lambda: events.named("first_sync"), timeout=120)
        took = time.monotonic() - started
    fetches = [c for c in proxy.commands if b" FETCH " in c.upper()]
    assert fetches == [], fetches[:3]
    assert events.named("first_sync")[0]["existing"] == count
    report("huge_mailbox_first_start", messages=count, seconds_to_first_sync=round(took, 2))


def test_connections_cut_at_random_moments(
    mailbox: Box, proxy: FaultProxy, tmp_path: Path, long_mode: bool, report: Report
) -> None:
    """Mail keeps arriving while every connection is cut at random moments (Junk's too)."""
    cuts = 100 if long_mode else 5
    rng = random.Random(7)
    config = spamd_config(tmp_path, through(mailbox, proxy))
    messages: dict[int, tuple[bytes, bool]] = {}
    severed = 0
    with running_service(config) as (service, _):
        wait_until(lambda: all(w.health.last_sync for w in service.watchers))
        for i in range(cuts):
            wait_until(lambda: proxy.open_connections() == 2, timeout=30, what="a reconnect")
            messages |= deliver(mailbox, 1000 + 4 * i, 4)
            time.sleep(rng.uniform(0.0, 1.0))
            severed += proxy.cut_all()
        wait_until(lambda: settled(mailbox, messages), timeout=120, what="the last messages")
        wait_until(lambda: all_decided(state_path(config), mailbox.user, messages), timeout=30)
    assert severed >= 2 * cuts  # each cut found both of its connections up again
    assert_each_once_and_spam_in_junk(mailbox, messages)
    assert_decided_once(state_path(config), mailbox.user, messages)
    report("random_cuts", cuts=cuts, connections_cut=severed, messages=len(messages))
