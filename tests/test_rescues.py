"""The watchers' rescue matching (pure): what an arrival is, who put mail in Junk, which
held copy a departure from Junk rescued, and so which corrections result."""

from __future__ import annotations

from spamd.core.decisions import Status
from spamd.core.identity import RESCUE_WINDOW, Sighting
from spamd.core.learning import Label
from spamd.core.rescues import (
    arrivals,
    may_have_departed,
    needs_fingerprints,
    origin,
    rescued_copy,
)
from spamd.store.state import Decision


def test_what_each_arrival_is_from_what_is_known_of_the_same_mail() -> None:
    keys = ["rescued", "rescued-in-junk", "junked", "junked-in-junk", "in-junk", "new"]
    labels: dict[str, Label] = {
        "rescued": "ham",
        "rescued-in-junk": "ham",
        "junked": "spam",
        "junked-in-junk": "spam",
    }
    in_junk = {"rescued-in-junk", "junked-in-junk", "in-junk"}
    assert arrivals(keys, labels, in_junk) == [
        "rescued",  # the user's latest word: not spam, wherever a copy is
        "rescued",
        "known-spam",  # a copy of mail spamd junked or the user labelled spam
        "held",  # the original is in Junk: maybe the first half of a rescue
        "held",
        "new",
    ]


def test_a_batch_is_read_again_with_fingerprints_only_when_a_correction_may_need_them() -> None:
    assert not needs_fingerprints(fingerprinted=True, in_junk={"k"}, remembers=True)
    assert not needs_fingerprints(fingerprinted=False, in_junk=set(), remembers=False)
    assert needs_fingerprints(fingerprinted=False, in_junk={"k"}, remembers=False)  # a rescue
    assert needs_fingerprints(fingerprinted=False, in_junk=set(), remembers=True)  # first label


def test_who_put_mail_in_junk_and_so_whether_it_is_a_spam_label() -> None:
    moved = {"ours", "ours-rescued", "ours-junked"}
    labels: dict[str, Label] = {
        "ours-rescued": "ham",
        "ours-junked": "spam",
        "theirs-junked": "spam",
    }
    who = {key: origin(key, moved, labels) for key in [*moved, "theirs", "theirs-junked"]}
    assert who == {
        "ours": "spamd",  # spamd's own move: no correction
        "ours-junked": "spamd",
        "ours-rescued": "user",  # dragged back after a rescue: the user's latest word, spam
        "theirs": "user",
        "theirs-junked": "user",
    }


def held(folder: str, uid: int, key: str, at: float, uidvalidity: int = 7) -> Decision:
    return Decision(
        "a", folder, uidvalidity, uid, "<m@x>", key, 0.9, "move", "known-spam", "v",
        Status.HELD, at,
    )  # fmt: skip


def test_a_departure_rescues_the_closest_held_copy_of_the_same_mail_within_the_window() -> None:
    copies = [
        held("Archive", 3, "k", at=1000 + 90),  # after the departure, but farther
        held("INBOX", 5, "k", at=1000 - 50),  # the rescue: the ham correction is for it
        held("INBOX", 6, "other", at=1000),  # other mail
        held("Old", 9, "k", at=1000 - RESCUE_WINDOW - 1),  # too long before
    ]
    rescue = rescued_copy(Sighting("k", 1000.0), copies, RESCUE_WINDOW)
    assert rescue is copies[1]
    assert (rescue.folder, rescue.uid, rescue.uidvalidity) == ("INBOX", 5, 7)


def test_a_departure_with_no_copy_close_enough_rescues_nothing() -> None:
    copies = [held("INBOX", 5, "k", at=1000 + RESCUE_WINDOW + 1), held("INBOX", 6, "j", at=1000)]
    assert rescued_copy(Sighting("k", 1000.0), copies, RESCUE_WINDOW) is None
    assert rescued_copy(Sighting("k", 1000.0), [], RESCUE_WINDOW) is None


def test_one_copy_per_folder_and_uid_the_last_given() -> None:
    before = held("INBOX", 5, "k", at=990, uidvalidity=1)
    now = held("INBOX", 5, "k", at=995, uidvalidity=2)
    assert rescued_copy(Sighting("k", 1000.0), [before, now], RESCUE_WINDOW) is now


def test_mail_spamd_moved_may_have_left_junk_unseen_only_if_not_seen_there_or_leaving() -> None:
    assert may_have_departed("<m@x>", "k", there=set(), departed=set())
    assert not may_have_departed("<m@x>", "k", there={"k"}, departed=set())  # still in Junk
    assert not may_have_departed("<m@x>", "k", there=set(), departed={"k"})  # handled already
    assert not may_have_departed("", "k", there=set(), departed=set())  # nothing to search for
