"""The daemon's story on every server layout of the field (tests/sandbox.py `LAYOUTS`),
and on Debian's Cyrus IMAP where it can run (tests/cyrus.py).

Each layout gets its own Dovecot; on each, spamd runs the same story: mail is
delivered and spam goes to that server's Junk folder (or is flagged where the
server cannot move safely); the user rescues one spam and drags one ham into
Junk, both learnt; spamd is cut off in the middle of a move and finishes it
after a restart. Through it all, every message exists exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import imapclient
import pytest

from spamd.errors import TransientMailboxError
from spamd.mail.imap import Connection
from spamd.store.state import State, state_path
from tests import cyrus
from tests.conftest import (
    HAM,
    SPAM,
    Box,
    inbox_watcher,
    running_service,
    spamd_config,
    wait_until,
)
from tests.sandbox import LAYOUTS, Dovecot, Layout, running


@pytest.fixture(scope="module", params=[*LAYOUTS, cyrus.LAYOUT], ids=str)
def server(request: pytest.FixtureRequest) -> Iterator[Dovecot | cyrus.Cyrus]:
    """A Dovecot laid out as each of `LAYOUTS`, and a Cyrus as Debian configures it."""
    if request.param is cyrus.LAYOUT:
        why = cyrus.unavailable()
        if why:
            pytest.skip(why)
        with cyrus.running({"u": "p"}) as started_cyrus:
            yield started_cyrus
        return
    with running({"u": "p"}, request.param) as started:
        yield started


def subject(path: Path) -> str:
    return next(
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("Subject:")
    )


def user_move(box: Box, what: str, source: str, target: str) -> None:
    """Another client moves the message with this subject, as it can on this server:
    MOVE, else COPY + STORE \\Deleted + EXPUNGE."""
    client = box.client
    client.select_folder(source)
    data = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    uids = [
        uid
        for uid, item in data.items()
        if any(what.encode() in v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
    ]
    assert len(uids) == 1, f"{what!r} in {source}: {uids}"
    if client.has_capability("MOVE"):
        client.move(uids, target)
    else:
        client.copy(uids, target)
        client.add_flags(uids, [imapclient.DELETED])
        client.expunge()
    client.unselect_folder()


class CutAfterServerAction(Connection):
    """A connection lost just after the server carried out a move, a copy or a flag,
    before spamd heard back: the worst moment for a crash."""

    def _cut(self) -> None:
        self.close()
        raise TransientMailboxError("injected: connection cut after the server acted")

    def move(self, uids: Sequence[int], folder: str) -> None:
        super().move(uids, folder)
        self._cut()

    def copy(self, uids: Sequence[int], folder: str) -> None:
        super().copy(uids, folder)
        self._cut()

    def add_keywords(self, uids: Sequence[int], keywords: Sequence[str]) -> None:
        super().add_keywords(uids, keywords)
        self._cut()


def everything(box: Box) -> list[str]:
    folders = [n for f, _, n in box.client.list_folders() if b"\\Noselect" not in f]
    return sorted(s for name in folders for s in box.subjects(str(name)))


def flagged(box: Box) -> int:
    box.client.select_folder("INBOX", readonly=True)
    return len(box.client.search(["KEYWORD", "$Junk"]))


def test_the_story_on_every_layout(server: Dovecot | cyrus.Cyrus, tmp_path: Path) -> None:
    layout: Layout = server.layout
    moves = not {"MOVE", "UIDPLUS"} <= set(layout.hide)
    junk = layout.junk
    box = Box(cast(Dovecot, server), "u", "p", tmp_path)  # a Box needs only its imap_port
    settings = box.settings(poll_interval=1)
    config = spamd_config(tmp_path, settings, learning={"retrain_delay": 3600})
    delivered = [*HAM[:2], *SPAM[:2]]
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service._all_watchers()))
        (connected, *_) = events.named("connected")
        assert connected["junk"] == junk, connected
        for path in delivered:
            box.append(path.read_bytes())
        wait_until(lambda: sum(w.health.handled for w in service.watchers) == 4)
        if moves:
            assert box.subjects(junk) == sorted(subject(p) for p in SPAM[:2])
            assert box.count("INBOX") == 2
            # The user: "this one is not spam".
            user_move(box, subject(SPAM[0]), junk, "INBOX")
            wait_until(lambda: events.named("correction"), what="the rescue to be learnt")
            assert [(e["label"], e["how"]) for e in events.named("correction")] == [
                ("ham", "rescued")
            ]
        else:  # neither MOVE nor UIDPLUS: flagged where it is, said once
            assert (box.count("INBOX"), flagged(box), box.count(junk)) == (4, 2, 0)
            assert len(events.named("cannot_move_safely")) == 1
        learnt = len(events.named("correction"))
        user_move(box, subject(HAM[0]), "INBOX", junk)  # the user: "this one is"
        wait_until(lambda: len(events.named("correction")) > learnt, what="the junking")
        assert events.named("correction")[-1]["how"] == "moved_to_junk"
    assert everything(box) == sorted(subject(p) for p in delivered)

    # Spam arrives while spamd is down; at the next start it is cut off just after
    # the server moved (copied, flagged) it; then started again.
    for path in SPAM[2:4]:
        box.append(path.read_bytes())
    delivered += SPAM[2:4]
    state = State(state_path(config))
    folder = inbox_watcher(config, state, CutAfterServerAction.open)
    cut = CutAfterServerAction.open(config.accounts[0])
    with pytest.raises(TransientMailboxError):
        folder.sync(cut, folder.prepare(cut))
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.watchers))
        assert not events.named("message")  # nothing classified again
    with contextlib.closing(box):
        assert everything(box) == sorted(subject(p) for p in delivered)  # none lost, none twice
        if moves:
            assert box.count(junk) == 4  # one spam left, the dragged ham, the two new
            assert box.count("INBOX") == 2
        else:
            assert (box.count("INBOX"), flagged(box), box.count(junk)) == (5, 4, 1)
    assert all(not state.unfinished("u", "INBOX", d.uidvalidity) for d in state.decisions("u"))
    state.close()
