"""Deciding (pure, no server): readings and what is known of the same mail, with the
account's rules and memory of corrections, to the decisions recorded: which UIDs are to
be moved or flagged, which are held, which are let be."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamd.core.decisions import Status
from spamd.core.identity import Arrival
from spamd.core.learning import Correction
from spamd.daemon.deciding import Rules, Where, decide_all
from spamd.daemon.watcher import Memory, Reading
from spamd.ops.config import Mode
from spamd.store.state import State
from tests.conftest import Events

THRESHOLD = 0.5
WHERE = Where("a", "INBOX", 7, THRESHOLD, "model-1")
SPAMMY, HAMMY = 0.99, 0.01


@pytest.fixture
def memory(tmp_path: Path) -> Memory:
    return Memory("a", State(tmp_path / "s.db"), Events.logger())


def reading(n: int, score: float, **fields: object) -> Reading:
    return Reading(f"key{n}", score, f"s{n}@example.org", f"<{n}@x>", **fields)  # type: ignore[arg-type]


def outcome(
    memory: Memory,
    batch: list[tuple[int, Reading, Arrival]],
    mode: Mode = "move",
    **rules: object,
) -> dict[int, tuple[str, str, Status]]:
    uids, readings, arrivals = zip(*batch, strict=True)
    decisions = decide_all(
        uids,
        readings,
        arrivals,
        rules=Rules(mode, **rules),  # type: ignore[arg-type]
        judge=memory,
        where=WHERE,
    )
    assert [d.uid for d in decisions] == list(uids)
    assert all((d.account, d.folder, d.uidvalidity) == ("a", "INBOX", 7) for d in decisions)
    return {d.uid: (d.action, d.reason, d.status) for d in decisions}


def test_which_uids_move_which_are_held_and_which_stay(memory: Memory) -> None:
    batch: list[tuple[int, Reading, Arrival]] = [
        (1, reading(1, SPAMMY), "new"),
        (2, reading(2, HAMMY), "new"),
        (3, reading(3, SPAMMY), "held"),  # its original is in Junk: a rescue may follow
        (4, reading(4, HAMMY), "held"),  # a copy of mail in Junk is spam, whatever its score
        (5, reading(5, HAMMY), "known-spam"),
        (6, reading(6, SPAMMY), "rescued"),  # the user's latest word: never junked again
    ]
    assert outcome(memory, batch) == {
        1: ("move", "score", Status.PENDING),
        2: ("keep", "score", Status.DONE),
        3: ("move", "known-spam", Status.HELD),
        4: ("move", "known-spam", Status.HELD),
        5: ("move", "known-spam", Status.PENDING),
        6: ("keep", "rescued", Status.DONE),
    }


def test_the_decision_carries_what_recovery_and_rescues_need(memory: Memory) -> None:
    (decision,) = decide_all(
        [42],
        [reading(1, SPAMMY)],
        ["new"],
        rules=Rules("move"),
        judge=memory,
        where=WHERE,
    )
    assert (decision.message_id, decision.content_hash) == ("<1@x>", "key1")
    assert (decision.score, decision.model_version) == (SPAMMY, "model-1")


@pytest.mark.parametrize(
    ("mode", "acts", "status"),
    [
        ("move", "move", Status.PENDING),
        ("flag", "flag", Status.PENDING),
        ("dry_run", "log", Status.DONE),
    ],
)
def test_the_mode_the_server_allows_says_how_spam_is_acted_on(
    memory: Memory, mode: Mode, acts: str, status: Status
) -> None:
    batch: list[tuple[int, Reading, Arrival]] = [
        (1, reading(1, SPAMMY), "new"),
        (2, reading(2, SPAMMY), "held"),
    ]
    held = Status.HELD if status == Status.PENDING else status  # a dry run only logs
    assert outcome(memory, batch, mode) == {
        1: (acts, "score", status),
        2: (acts, "known-spam", held),
    }


def test_unreadable_mail_is_never_moved_and_flagged_only_if_asked(memory: Memory) -> None:
    batch: list[tuple[int, Reading, Arrival]] = [
        (1, reading(1, 0.0, error="ValueError"), "new"),
        (2, reading(2, 0.0, error="ValueError"), "known-spam"),
        (3, reading(3, SPAMMY, partial=True), "new"),  # read in part: scored as read
    ]
    assert outcome(memory, batch) == {
        1: ("keep", "unreadable", Status.DONE),
        2: ("keep", "unreadable", Status.DONE),
        3: ("move", "score", Status.PENDING),
    }
    assert outcome(memory, batch, flag_unreadable=True)[1] == ("flag", "unreadable", Status.PENDING)


def test_the_account_lists_and_its_corrections_weigh_in(memory: Memory) -> None:
    remembered = Correction("a", "ham", "rescued", "Junk", "<9@x>", "key9", 0xF00D, "", "", b"x")
    memory.learn(remembered)
    batch: list[tuple[int, Reading, Arrival]] = [
        (1, reading(1, SPAMMY), "new"),  # s1@example.org: allowed
        (2, reading(2, HAMMY), "new"),  # s2@example.org: blocked
        (3, reading(3, SPAMMY, fingerprint=0xF00D), "new"),  # like mail the user rescued
    ]
    assert outcome(memory, batch, allow=("s1@example.org",), block=("s2@example.org",)) == {
        1: ("keep", "allow-list", Status.DONE),
        2: ("move", "block-list", Status.PENDING),
        3: ("keep", "rescued-before", Status.DONE),
    }
