"""What to do with a scored message. Pure: score and settings in, verdict out."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from spamd.core.learning import Label

Action = Literal["move", "flag", "log", "keep"]


@dataclass(frozen=True, slots=True)
class Verdict:
    spam: bool
    action: Action  # move: to Junk; flag: set $Junk; log: dry run; keep: leave it
    reason: str  # score, allow-list, block-list, unreadable, rescued, junked-before, ...


def listed(address: str, entries: Collection[str]) -> bool:
    """Whether an address matches an entry: the address itself, or its domain or a parent."""
    address = address.lower()
    domain = address.rpartition("@")[2]
    for entry in entries:
        if "@" in entry:
            if address == entry:
                return True
        elif domain == entry or domain.endswith("." + entry):
            return True
    return False


def decide(
    score: float,
    threshold: float,
    sender: str,
    *,
    mode: Literal["move", "flag", "dry_run"],
    allow: Collection[str] = (),
    block: Collection[str] = (),
    remembered: Label | None = None,
    sender_junked: bool = False,
    move_at: float = 0.0,
    known_spam: bool = False,
) -> Verdict:
    """The verdict, in order: allow-list, a copy of mail spamd junked or the user
    labelled spam (`known_spam`), a message like one the user rescued,
    block-list, a message like one the user junked, a sender the user keeps
    junking, and only then the model's score. A score between `threshold` and
    `move_at` (a cautious account, `calibration`) is flagged, not moved."""
    if sender and listed(sender, allow):
        return Verdict(spam=False, action="keep", reason="allow-list")
    if known_spam:
        spam, reason = True, "known-spam"
    elif remembered == "ham":
        return Verdict(spam=False, action="keep", reason="rescued-before")
    elif sender and listed(sender, block):
        spam, reason = True, "block-list"
    elif remembered == "spam":
        spam, reason = True, "junked-before"
    elif sender_junked:
        spam, reason = True, "junked-sender"
    else:
        spam, reason = score >= threshold, "score"
    if not spam:
        return Verdict(spam=False, action="keep", reason=reason)
    action: Action = {"move": "move", "flag": "flag", "dry_run": "log"}[mode]  # type: ignore[assignment]
    if reason == "score" and score < move_at and action == "move":
        return Verdict(spam=True, action="flag", reason="uncertain")
    return Verdict(spam=True, action=action, reason=reason)


def unreadable(flag: bool, mode: Literal["move", "flag", "dry_run"]) -> Verdict:
    """A message that could not be read is never scored: it stays where it is, with
    `flag` marked $Junk as well (only logged in a dry run)."""
    if not flag:
        return Verdict(spam=False, action="keep", reason="unreadable")
    return Verdict(spam=True, action="log" if mode == "dry_run" else "flag", reason="unreadable")


RESCUED = Verdict(spam=False, action="keep", reason="rescued")  # back from Junk: never again
