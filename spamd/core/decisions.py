"""The life of a recorded decision, as one table. Pure: no I/O.

Every change of a decision's status goes through `check` (the state store calls
it inside the transaction that makes the change). The table is the whole story
of crash safety (`state.py` explains the order of writes):

    pending  -> copying  before a COPY (the fallback without MOVE)
    pending  -> done     moved (MOVE), flagged, or let be
    pending  -> gone     not in the folder any more (moved before a crash, or by the user)
    pending  -> pending  a command the server refused and that changed nothing: try again
    copying  -> done     the copy is in Junk and the original gone (or left flagged)
    held     -> done     a copy of mail in Junk that the user's drag out of Junk made a rescue
    held     -> pending  its original stayed in Junk: a re-delivery of spam, to be moved
    held     -> gone     not in the folder any more

A ``held`` decision waits (`identity.RESCUE_WINDOW`) without touching the server.

What is missing is forbidden: above all ``copying -> pending``, which would
COPY the same message again at the next sync (a duplicate in Junk), and any
way out of ``done`` and ``gone``.
"""

from __future__ import annotations

from enum import StrEnum

from spamd.errors import SpamdError


class Status(StrEnum):
    PENDING = "pending"  # recorded; the server not yet changed
    COPYING = "copying"  # a COPY to Junk was (maybe) sent; never send it again
    DONE = "done"
    GONE = "gone"
    HELD = "held"  # a copy of mail in Junk: a rescue under way, or a re-delivery


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PENDING, Status.COPYING, Status.DONE, Status.GONE}),
    Status.COPYING: frozenset({Status.DONE}),
    Status.DONE: frozenset(),
    Status.GONE: frozenset(),
    Status.HELD: frozenset({Status.DONE, Status.PENDING, Status.GONE}),
}
# What a sync carries out; a held decision waits for its window instead.
UNFINISHED = frozenset(s for s, targets in TRANSITIONS.items() if targets) - {Status.HELD}
# Entering these states means a command was (maybe) carried out on the server:
# a status from which the same command would be sent again must never follow.
SERVER_ACTED = frozenset({Status.COPYING, Status.DONE})


class IllegalTransition(SpamdError):
    """A decision's status was asked to change in a way the table forbids (a bug)."""

    def __init__(self, old: str, new: str, where: str = "") -> None:
        at = f" ({where})" if where else ""
        super().__init__(f"illegal decision status change {old} -> {new}{at}")
        self.old = old
        self.new = new


def check(old: str, new: str, where: str = "") -> Status:
    """The new status, if the table allows going there from `old`; else raises."""
    try:
        before, after = Status(old), Status(new)
    except ValueError:
        raise IllegalTransition(old, new, where) from None
    if after not in TRANSITIONS[before]:
        raise IllegalTransition(old, new, where)
    return after
