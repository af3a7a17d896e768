"""Deciding: from a batch's readings, what is known of the same mail and the account's
rules, to the decisions a watcher records. Pure: no I/O, no logging.

Each message gets a verdict (`policy`): a rescue is kept for good; a message
that could not be read is never scored (`policy.unreadable`); the rest is
judged by the account's memory of corrections (`watcher.Memory.decide`) on its
score. A verdict to move or flag is recorded ``pending`` (to be carried out),
or ``held`` when the same mail is still in Junk (`identity.arrival`); anything
else is ``done`` as it is recorded (see `decisions`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from spamd.core import identity, policy
from spamd.core.decisions import Status
from spamd.ops.config import Mode
from spamd.store.state import Decision

if TYPE_CHECKING:
    from spamd.daemon.watcher import Reading


class Judge(Protocol):
    """Weighs what the user taught into a readable message's verdict (`watcher.Memory`)."""

    def decide(
        self,
        reading: Reading,
        threshold: float,
        *,
        mode: Mode,
        allow: Collection[str] = (),
        block: Collection[str] = (),
        known_spam: bool = False,
    ) -> policy.Verdict: ...


@dataclass(frozen=True, slots=True)
class Rules:
    """What an account's settings say about verdicts, in the mode its server allows."""

    mode: Mode  # the account's, or "flag" where the server cannot move safely
    allow: Collection[str] = ()
    block: Collection[str] = ()
    flag_unreadable: bool = False


@dataclass(frozen=True, slots=True)
class Where:
    """Where a batch was read from, and by which model."""

    account: str
    folder: str
    uidvalidity: int
    threshold: float  # the model's own (an account's calibration may replace it)
    model_version: str


def verdict(
    reading: Reading, arrival: identity.Arrival, rules: Rules, judge: Judge, threshold: float
) -> policy.Verdict:
    """What to do with one message."""
    if arrival == "rescued":  # the user's latest word on this mail: not spam
        return policy.RESCUED
    if reading.error:
        return policy.unreadable(rules.flag_unreadable, rules.mode)
    return judge.decide(
        reading,
        threshold,
        mode=rules.mode,
        allow=rules.allow,
        block=rules.block,
        known_spam=arrival in ("known-spam", "held"),
    )


def decide(
    uid: int,
    reading: Reading,
    arrival: identity.Arrival,
    *,
    rules: Rules,
    judge: Judge,
    where: Where,
) -> Decision:
    """The decision to record for one message."""
    said = verdict(reading, arrival, rules, judge, where.threshold)
    acts = said.action in ("move", "flag")
    return Decision(
        account=where.account,
        folder=where.folder,
        uidvalidity=where.uidvalidity,
        uid=uid,
        message_id=reading.message_id,
        content_hash=reading.content_hash,
        score=reading.score,
        action=said.action,
        reason=said.reason,
        model_version=where.model_version,
        status=(Status.HELD if arrival == "held" else Status.PENDING) if acts else Status.DONE,
    )


def decide_all(
    uids: Sequence[int],
    readings: Sequence[Reading],
    arrivals: Sequence[identity.Arrival],
    *,
    rules: Rules,
    judge: Judge,
    where: Where,
) -> list[Decision]:
    """The decisions for a batch, in its order (one per UID, reading and arrival)."""
    return [
        decide(uid, reading, arrival, rules=rules, judge=judge, where=where)
        for uid, reading, arrival in zip(uids, readings, arrivals, strict=True)
    ]
