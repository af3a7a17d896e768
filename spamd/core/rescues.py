"""The watchers' rescue matching: which mail is the same, and what its arrival means. Pure: no I/O.

`identity` says when two copies are the same mail (`mail_key`) and what one
arrival or departure is (`arrival`, `rescue_of`). These are the steps the
watchers take with it, on what the state store told them:

- a folder watcher, for a batch of new mail: what each message is (`arrivals`),
  and whether the batch must be read again with fingerprints (`needs_fingerprints`);
- the Junk watcher, for mail arriving in Junk: who put it there (`origin`);
- the Junk watcher, for mail that left Junk: which held copy it rescued
  (`rescued_copy`), and whether mail spamd moved may have left unseen
  (`may_have_departed`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal, Protocol, TypeVar

from spamd.core.identity import Arrival, Sighting, arrival, rescue_of
from spamd.core.learning import Label

Origin = Literal["spamd", "user"]  # who put a message in Junk


class Copy(Protocol):
    """A message seen arriving outside Junk (a held `state.Decision` is one)."""

    @property
    def content_hash(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def folder(self) -> str: ...
    @property
    def uid(self) -> int: ...


CopyT = TypeVar("CopyT", bound=Copy)


def arrivals(
    keys: Sequence[str], labels: Mapping[str, Label], in_junk: Collection[str]
) -> list[Arrival]:
    """What each of these messages (by `mail_key`) is, arriving outside Junk:
    `labels` is the latest word on the same mail (the user's, else "spam" where
    spamd junked it); `in_junk` the keys of mail in Junk now (or just moved there)."""
    return [arrival(label=labels.get(key), in_junk=key in in_junk) for key in keys]


def needs_fingerprints(*, fingerprinted: bool, in_junk: Collection[str], remembers: bool) -> bool:
    """Whether a batch read without fingerprints must be read again with them: a
    copy of mail in Junk may turn out a rescue (stored as a correction), or the
    account learnt its first correction while the batch was read."""
    return not fingerprinted and (bool(in_junk) or remembers)


def origin(key: str, moved_by_spamd: Collection[str], labels: Mapping[str, Label]) -> Origin:
    """Who put this mail in Junk: spamd, if it moved it there and the user has not
    rescued it since; else the user (whose drag into Junk is a spam label)."""
    return "spamd" if key in moved_by_spamd and labels.get(key) != "ham" else "user"


def rescued_copy(departure: Sighting, held: Iterable[CopyT], window: float) -> CopyT | None:
    """The held copy (one per folder and UID, the last given) that this departure
    from Junk makes a rescue: the same mail, seen within `window` seconds of it."""
    by_place = {(c.folder, c.uid): c for c in held}
    sightings = [Sighting(c.content_hash, c.at, c.folder, c.uid) for c in by_place.values()]
    rescue = rescue_of(departure, sightings, window)
    return None if rescue is None else by_place[rescue.folder, rescue.uid]


def may_have_departed(
    message_id: str, key: str, *, there: Collection[str], departed: Collection[str]
) -> bool:
    """Whether mail spamd moved to Junk lately may have left it unseen: not in Junk
    at the last look, not handled as a departure already, and with a Message-ID to
    search Junk for (a search finding it there means it has not left)."""
    return bool(message_id) and key not in there and key not in departed
