"""Acting (no server): recorded decisions carried out through the Mailbox port in the
crash-safe order `decisions.TRANSITIONS` asks for. A unit test of the acting piece over
a stand-in port; the same paths run against Dovecot in test_daemon and reliability/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from spamd.core.decisions import Status
from spamd.core.layout import MoveMethod
from spamd.daemon.acting import Actor
from spamd.daemon.watcher import NoMetrics
from spamd.errors import MailboxError
from spamd.ops.config import Account, Secret
from spamd.store.state import Decision, State
from tests.conftest import Events

ACCOUNT = Account(
    name="a", host="h", username="u", password=Secret("value", "p", "test"), set_keywords=False
)


class Port:
    """The commands acting sends, each with the statuses the store held as it was sent."""

    def __init__(self, state: State, method: MoveMethod, refuse: str = "") -> None:
        self.move_method = method
        self._state, self._refuse = state, refuse
        self.sent: list[tuple[str, tuple[int, ...], tuple[Status, ...]]] = []
        self.selected: list[str] = []

    def _send(self, command: str, uids: Sequence[int]) -> None:
        status = {d.uid: d.status for d in self._state.decisions("a")}
        self.sent.append((command, tuple(uids), tuple(status[u] for u in uids)))
        if command == self._refuse:
            raise MailboxError(f"{command} failed: NO [OVERQUOTA] quota exceeded")

    def move(self, uids: Sequence[int], folder: str) -> None:
        self._send("move", uids)

    def copy(self, uids: Sequence[int], folder: str) -> None:
        self._send("copy", uids)

    def delete(self, uids: Sequence[int]) -> None:
        self._send("delete", uids)

    def add_keywords(self, uids: Sequence[int], keywords: Sequence[str]) -> None:
        self._send("flag", uids)

    def existing(self, uids: Sequence[int]) -> set[int]:
        return set(uids)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        return {}

    def select(self, folder: str, *, readonly: bool = False) -> None:
        self.selected.append(folder)

    def search_header(self, name: str, value: str) -> list[int]:
        return []  # Junk lacks it


def recorded(tmp_path: Path, *rows: tuple[int, str, Status]) -> State:
    state = State(tmp_path / "s.db")
    decisions = [
        Decision("a", "Lists", 7, uid, f"<{uid}@x>", f"k{uid}", 0.9, action, "score", "v", status)
        for uid, action, status in rows
    ]
    state.record(decisions, "a", "Lists", None)
    return state


def carry_out(state: State, port: Port) -> dict[int, str]:
    actor = Actor(ACCOUNT, state, Events.logger(), NoMetrics())
    pending = state.unfinished("a", "Lists", 7)
    return actor.apply(port, "Lists", "Junk", pending)  # type: ignore[arg-type]


def statuses(state: State) -> dict[int, Status]:
    return {d.uid: d.status for d in state.decisions("a")}


def test_without_move_a_message_is_copying_before_its_copy_is_sent(tmp_path: Path) -> None:
    state = recorded(tmp_path, (1, "move", Status.PENDING), (2, "move", Status.PENDING))
    port = Port(state, "copy")
    assert carry_out(state, port) == {}
    copying = (Status.COPYING, Status.COPYING)
    assert port.sent == [("copy", (1, 2), copying), ("delete", (1, 2), copying)]
    assert statuses(state) == {1: Status.DONE, 2: Status.DONE}


def test_a_message_copied_before_a_crash_is_copied_again_only_if_junk_lacks_it(
    tmp_path: Path,
) -> None:
    state = recorded(tmp_path, (1, "move", Status.COPYING), (2, "move", Status.PENDING))
    port = Port(state, "move")  # the server has MOVE now
    assert carry_out(state, port) == {}
    assert [(c, u) for c, u, _ in port.sent] == [("move", (2,)), ("copy", (1,)), ("delete", (1,))]
    assert port.selected == ["Junk", "Lists"]  # looked in Junk, then back to its folder
    assert statuses(state) == {1: Status.DONE, 2: Status.DONE}


def test_flags_are_set_then_done(tmp_path: Path) -> None:
    state = recorded(tmp_path, (1, "flag", Status.PENDING), (2, "move", Status.PENDING))
    port = Port(state, "flag")  # moves decided before the server lost MOVE and UIDPLUS
    assert carry_out(state, port) == {2: "flag"}
    assert [(c, u) for c, u, _ in port.sent] == [("flag", (1,)), ("flag", (2,))]
    assert statuses(state) == {1: Status.DONE, 2: Status.DONE}


@pytest.mark.parametrize(("method", "refused"), [("move", "move"), ("copy", "copy")])
def test_a_refused_command_is_retried_but_never_a_copy_that_may_have_been_made(
    tmp_path: Path, method: MoveMethod, refused: str
) -> None:
    state = recorded(tmp_path, (1, "move", Status.PENDING))
    port = Port(state, method, refuse=refused)
    assert carry_out(state, port) == {1: "move_failed"}
    # A refused MOVE changed nothing: pending, tried again at the next sync. A COPY
    # may have been made before the refusal: it stays copying, never sent again.
    assert statuses(state) == {1: Status.PENDING if refused == "move" else Status.COPYING}
