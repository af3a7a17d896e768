"""Values from mail in IMAP commands: a crafted Message-ID cannot break an account's Junk watcher.

A Message-ID goes into ``UID SEARCH HEADER Message-ID`` when mail leaves Junk (to find
where it went) and in the COPY fallback. These tests put Message-IDs with non-ASCII,
parentheses, control characters and a literal's ``{5}`` through a real Dovecot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from spamd.daemon.service import Service
from spamd.mail.imap import Connection
from spamd.ops.config import Config
from spamd.store.state import State, state_path
from tests import sandbox
from tests.conftest import SPAM, Box, Events, new_box, running_service, spamd_config, wait_until
from tests.reliability.conftest import assert_each_once_and_spam_in_junk, through
from tests.reliability.proxy import FaultProxy

HOSTILE_IDS = [
    "<grüße-€@example.org>",
    "<open(paren@example.org>",
    "<close)paren@example.org>",
    "<ctl\x01\x07\x7fchars@example.org>",
    "<{5}@example.org>",
    '<"quoted\\"@example.org>',
]


def with_message_id(raw: bytes, message_id: str) -> bytes:
    lines = [line for line in raw.split(b"\n") if not line.lower().startswith(b"message-id:")]
    return f"Message-ID: {message_id}\r\n".encode() + b"\n".join(lines)


def synced_again(service: Service) -> None:
    """Wait for every Junk watcher to complete a sync begun after now."""
    before = [w.health.last_sync for w in service.junk_watchers]
    for watcher in service.junk_watchers:
        watcher.wake.set()
    wait_until(
        lambda: all(
            w.health.last_sync > b for w, b in zip(service.junk_watchers, before, strict=True)
        ),
        what="a Junk sync",
    )


def assert_healthy(service: Service, events: Events) -> None:
    healthy, _ = service.health()
    assert healthy, service.health()
    assert all(w.health.failures == 0 for w in service.junk_watchers)
    assert not events.named("connection_failed"), events.named("connection_failed")
    assert not events.named("internal_error")


@contextlib.contextmanager
def started(config: Config, **options: object) -> Iterator[tuple[Service, Events]]:
    with running_service(config, **options) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.junk_watchers))
        yield service, events


def test_hostile_message_ids_leave_junk_and_are_found(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    mailbox.client.create_folder("Archive")
    with started(config) as (service, events):
        for n, message_id in enumerate(HOSTILE_IDS):
            raw = with_message_id(SPAM[n % len(SPAM)].read_bytes(), message_id)
            mailbox.append(raw.replace(b"Subject: ", f"Subject: {n} ".encode(), 1), "Junk")
        wait_until(lambda: len(events.named("arrived_in_junk")) == len(HOSTILE_IDS))
        mailbox.client.select_folder("Junk")
        mailbox.client.move(mailbox.client.search("ALL"), "Archive")  # "not spam, keep it"
        mailbox.client.unselect_folder()
        wait_until(
            lambda: (
                len([e for e in events.named("correction") if e["how"] == "rescued"])
                == len(HOSTILE_IDS)
            ),
            what="every departure located in Archive",
        )
        synced_again(service)
        assert_healthy(service, events)
    rescued = [e for e in events.named("correction") if e["how"] == "rescued"]
    assert {e["folder"] for e in rescued} == {"Archive"}
    assert not events.named("left_junk")
    state = State(state_path(config))
    try:
        stored = {c.message_id for c in state.corrections(mailbox.user) if c.label == "ham"}
        assert {" ".join(m.split()) for m in HOSTILE_IDS} <= stored
    finally:
        state.close()
    with started(config) as (service, events):  # after a restart too
        synced_again(service)
        assert_healthy(service, events)


class RefusingSearches(Connection):
    """The real server, asked a search it refuses (BAD): as a server may refuse a value."""

    def search_header(self, name: str, value: str) -> list[int]:
        return super().search_header(f"{name} (", value)


def test_a_refused_search_is_logged_once_and_its_row_given_up(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    # Out of Junk into a folder spamd does not watch: only a search can find it there.
    mailbox.client.create_folder("Archive")
    with started(config, connect=RefusingSearches.open) as (service, events):
        mailbox.append(with_message_id(SPAM[0].read_bytes(), "<refused@example.org>"), "Junk")
        wait_until(lambda: events.named("arrived_in_junk"))
        mailbox.client.select_folder("Junk")
        mailbox.client.move(mailbox.client.search("ALL"), "Archive")
        mailbox.client.unselect_folder()
        wait_until(lambda: events.named("search_refused"), what="the refused search")
        synced_again(service)
        synced_again(service)
        assert_healthy(service, events)
        assert len(events.named("search_refused")) == 1
        assert "SEARCH failed" in str(events.named("search_refused")[0]["error"])
    with started(config, connect=RefusingSearches.open) as (service, events):
        synced_again(service)
        assert_healthy(service, events)
        assert not events.named("search_refused")


def test_a_cut_copy_of_mail_with_hostile_message_ids_is_found_in_junk(tmp_path: Path) -> None:
    """Without MOVE, a COPY whose answer was lost is looked for in Junk by Message-ID."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(sandbox.running({}, hide=("MOVE",)))
        box = stack.enter_context(contextlib.closing(new_box(server, "nomove", tmp_path)))
        proxy = FaultProxy(server.imap_port)
        stack.callback(proxy.close)
        config = spamd_config(tmp_path, through(box, proxy), learning={"enabled": False})
        messages = {
            n: (with_message_id(SPAM[n % len(SPAM)].read_bytes(), message_id), True)
            for n, message_id in enumerate(HOSTILE_IDS)
        }
        with running_service(config) as (service, events):
            wait_until(lambda: all(w.health.last_sync for w in service.watchers))
            proxy.arm(r"UID COPY", "cut_after")
            for raw, _ in messages.values():
                box.append(raw)
            wait_until(lambda: proxy.armed() == 0, what="the COPY to be cut")
            wait_until(lambda: box.count("INBOX") == 0, timeout=30, what="INBOX emptied")
            assert not events.named("internal_error")
            assert len(events.named("connection_failed")) == 1  # the cut, nothing after
        assert_each_once_and_spam_in_junk(box, messages)
