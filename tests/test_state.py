"""State store: marks never go backwards within one UIDVALIDITY; unfinished decisions survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamd.core.decisions import IllegalTransition, Status
from spamd.core.learning import BOOTSTRAP, Correction, Label
from spamd.store.state import Decision, FolderMark, State


def decision(uid: int, status: Status = Status.DONE, uidvalidity: int = 7) -> Decision:
    return Decision(
        "a", "INBOX", uidvalidity, uid, f"<{uid}@x>", "h", 0.9, "move", "score", "v", status
    )


def test_marks_and_unfinished_decisions_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = State(path)
    state.record([decision(1), decision(2, Status.PENDING)], "a", "INBOX", FolderMark(7, 2))
    state.set_mark("a", "INBOX", FolderMark(7, 1))  # never backwards
    state.close()
    state = State(path)
    assert state.mark("a", "INBOX") == FolderMark(7, 2)
    assert [d.uid for d in state.unfinished("a", "INBOX", 7)] == [2]
    assert state.decided_uids("a", "INBOX", 7, [1, 2, 3]) == {1, 2}
    state.set_status(state.unfinished("a", "INBOX", 7), Status.DONE)
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


def label(n: int, label: Label, how: str) -> Correction:
    return Correction(
        account="a", label=label, how=how, folder="INBOX", message_id=f"<{n}@x>",
        content_hash=f"h{n}", fingerprint=n, sender=f"s{n}@x", subject=f"m{n}", raw=b"x",
    )  # fmt: skip


def test_a_bootstrap_guess_never_overrides_a_users_label(tmp_path: Path) -> None:
    state = State(tmp_path / "s.db")
    assert state.add_correction(label(1, "ham", "rescued"))
    assert not state.add_correction(label(1, "spam", BOOTSTRAP))
    assert state.add_correction(label(2, "spam", BOOTSTRAP))
    assert state.add_correction(label(2, "ham", "rescued"))  # the user corrects the guess
    assert [(c.content_hash, c.label, c.how) for c in state.corrections("a")] == [
        ("h2", "ham", "rescued"),
        ("h1", "ham", "rescued"),
    ]


def test_past_the_cap_bootstrap_guesses_go_before_users_labels(tmp_path: Path) -> None:
    state = State(tmp_path / "s.db")
    state.add_correction(label(1, "spam", "moved_to_junk"), max_examples=3)
    for n in (2, 3, 4):
        state.add_correction(label(n, "ham", BOOTSTRAP), max_examples=3)
    state.add_correction(label(5, "spam", "moved_to_junk"), max_examples=3)
    assert [c.content_hash for c in state.corrections("a")] == ["h5", "h4", "h1"]
    assert state.fingerprints("a") == [(1, "spam"), (5, "spam")]  # guesses are not remembered


def test_the_store_refuses_an_illegal_status_change_and_changes_nothing(tmp_path: Path) -> None:
    state = State(tmp_path / "s.db")
    state.record([decision(1, Status.PENDING), decision(2, Status.PENDING)], "a", "INBOX", None)
    state.set_status([decision(1)], Status.COPYING)
    # copying -> pending would COPY the message again at the next sync: a duplicate in Junk.
    with pytest.raises(IllegalTransition, match="copying -> pending"):
        state.set_status([decision(2), decision(1)], Status.PENDING)
    assert {d.uid: d.status for d in state.unfinished("a", "INBOX", 7)} == {
        1: Status.COPYING,
        2: Status.PENDING,  # the whole change was refused, not half of it
    }
    state.set_status([decision(1)], Status.DONE)
    with pytest.raises(IllegalTransition, match="done -> gone"):
        state.set_status([decision(1)], Status.GONE)
    state.close()
