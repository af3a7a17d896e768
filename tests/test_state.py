"""State store: marks never go backwards within one UIDVALIDITY; unfinished decisions survive."""

from __future__ import annotations

from pathlib import Path

from spamd.state import Decision, FolderMark, State


def decision(uid: int, status: str = "done", uidvalidity: int = 7) -> Decision:
    return Decision(
        "a", "INBOX", uidvalidity, uid, f"<{uid}@x>", "h", 0.9, "move", "score", "v", status
    )


def test_marks_and_unfinished_decisions_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = State(path)
    state.record([decision(1), decision(2, "pending")], "a", "INBOX", FolderMark(7, 2))
    state.set_mark("a", "INBOX", FolderMark(7, 1))  # never backwards
    state.close()
    state = State(path)
    assert state.mark("a", "INBOX") == FolderMark(7, 2)
    assert [d.uid for d in state.unfinished("a", "INBOX", 7)] == [2]
    assert state.decided_uids("a", "INBOX", 7, [1, 2, 3]) == {1, 2}
    state.set_status(state.unfinished("a", "INBOX", 7), "done")
    assert state.unfinished("a", "INBOX", 7) == []
    state.record([decision(1)], "a", "INBOX", FolderMark(7, 2))  # a repeat is ignored
    assert len(state.decisions()) == 2
    state.close()


def test_a_new_uidvalidity_resets_the_mark(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite3")
    state.set_mark("a", "INBOX", FolderMark(7, 500))
    state.set_mark("a", "INBOX", FolderMark(8, 0))
    assert state.mark("a", "INBOX") == FolderMark(8, 0)
    assert state.decided_message_ids("a", "INBOX") == set()
    state.close()
