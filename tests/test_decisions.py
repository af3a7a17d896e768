"""The decision state table: what may follow what, and that recovery obeys it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from spamd.core.decisions import (
    SERVER_ACTED,
    TRANSITIONS,
    UNFINISHED,
    IllegalTransition,
    Status,
    check,
)
from spamd.core.layout import MoveMethod
from spamd.daemon import watcher
from spamd.ops.config import Account, Secret
from spamd.store.state import Decision, State
from tests.conftest import Events


def test_every_status_is_in_the_table_and_only_done_and_gone_are_final() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert {Status.PENDING, Status.COPYING} == UNFINISHED
    for old, targets in TRANSITIONS.items():
        for new in Status:
            if new in targets:
                assert check(old, new) is new
            else:
                with pytest.raises(IllegalTransition, match=f"{old} -> {new}"):
                    check(old, new)


def test_no_status_reached_after_a_server_action_leads_back_to_sending_it_again() -> None:
    # Walk the table: from a status entered once the server acted (a COPY sent, a
    # MOVE done), no path may lead back to 'pending', from which it is sent afresh.
    for acted in SERVER_ACTED:
        seen, todo = set(), [acted]
        while todo:
            status = todo.pop()
            seen.add(status)
            todo += [s for s in TRANSITIONS[status] if s not in seen]
        assert Status.PENDING not in seen, f"{acted} can lead back to pending"


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="pending -> moved"):
        check("pending", "moved")


class Recorder:
    """Just enough of a mailbox to see which commands recovery sends (a unit test of
    the recovery code; the same paths run against Dovecot in test_layouts)."""

    def __init__(self, method: MoveMethod, present: bool, in_junk: bool) -> None:
        self.move_method = method
        self.present, self.in_junk = present, in_junk
        self.sent: list[str] = []

    def existing(self, uids: Sequence[int]) -> set[int]:
        return set(uids) if self.present else set()

    def select(self, folder: str, *, readonly: bool = False) -> None:
        pass

    def search_header(self, name: str, value: str) -> list[int]:
        return [1] if self.in_junk else []

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        return {}

    def __getattr__(self, command: str) -> Callable[..., None]:  # move, copy, delete, ...
        return lambda *args: self.sent.append(command)


# (status, still in the folder, a copy in Junk): a 'pending' message was never copied.
CASES = [
    (status, present, in_junk)
    for status in sorted(UNFINISHED)
    for present in (True, False)
    for in_junk in ((False,) if status == Status.PENDING else (True, False))
]


@pytest.mark.parametrize("method", ["move", "copy", "flag"])
@pytest.mark.parametrize(("status", "present", "in_junk"), CASES)
def test_recovery_walks_the_table_and_never_repeats_a_server_action(
    tmp_path: Path, method: MoveMethod, status: Status, present: bool, in_junk: bool
) -> None:
    state = State(tmp_path / "s.db")
    row = Decision("a", "INBOX", 7, 1, "<1@x>", "h", 0.9, "move", "score", "v", status)
    state.record([row], "a", "INBOX", None)
    account = Account(
        name="a", host="h", username="u", password=Secret("value", "p", "test"), set_keywords=False
    )
    unused: Any = None  # recovery neither connects nor scores
    folder = watcher.FolderWatcher(
        account, "INBOX", connect=unused, model=unused, state=state, log=Events.logger(),
        stop=threading.Event(),
    )  # fmt: skip
    mailbox = Recorder(method, present, in_junk)
    folder.finish_unfinished(mailbox, "Junk", 7)  # type: ignore[arg-type]
    assert state.unfinished("a", "INBOX", 7) == []  # every path ends in done or gone
    if not present:
        assert mailbox.sent == []  # moved already (or by the user): nothing to send
    elif status == Status.COPYING and in_junk:
        assert "copy" not in mailbox.sent and "move" not in mailbox.sent
    elif method == "flag":
        assert mailbox.sent == ["add_keywords"]  # never a COPY it could not finish
    (done,) = [d for d in state.decisions("a") if d.uid == 1]
    assert done.status == (Status.DONE if present or status == Status.COPYING else Status.GONE)
