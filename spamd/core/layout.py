"""How a server lays out an account's folders, and what its capabilities allow. Pure.

Servers differ: Dovecot's default has no namespace prefix and ``/`` as the
separator; Courier, Debian's stock Cyrus and many hosting Dovecots put every
folder under ``INBOX.`` with ``.``; Gmail keeps spam in ``[Gmail]/Spam``;
Outlook calls it ``Junk Email``. The adapter (`imap.py`) reads NAMESPACE and
LIST; the functions here decide, from what it read, which folder is which.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

# Names clients and providers give the spam folder, most usual first (looked for
# case-insensitively, inside the personal namespace, after SPECIAL-USE \Junk).
JUNK_NAMES = ("Junk", "Spam", "Junk E-mail", "Junk Email", "Bulk Mail", "[Gmail]/Spam")
JUNK_FLAG = "\\junk"
UNSELECTABLE = {"\\noselect", "\\nonexistent"}

MoveMethod = Literal["move", "copy", "flag"]


@dataclass(frozen=True, slots=True)
class Namespace:
    """The personal namespace: where the user's folders are, and how they nest."""

    prefix: str = ""
    separator: str = "/"


@dataclass(frozen=True, slots=True)
class Folder:
    name: str
    flags: frozenset[str] = frozenset()  # as LIST gave them, e.g. "\\Junk", "\\HasNoChildren"

    @property
    def selectable(self) -> bool:
        return not {f.lower() for f in self.flags} & UNSELECTABLE


@dataclass(frozen=True, slots=True)
class Listing:
    """What the server said about an account's folders."""

    namespace: Namespace
    folders: tuple[Folder, ...]

    def names(self) -> list[str]:
        """The selectable folders' names, sorted (for messages to people)."""
        return sorted(f.name for f in self.folders if f.selectable)


@dataclass(frozen=True, slots=True)
class JunkFolder:
    name: str  # as the server spells it
    how: str  # why this one, for the log and check-config
    exists: bool  # False: it is to be created


def server_name(name: str, namespace: Namespace) -> str:
    """A configured folder name as the server spells it: inside the personal
    namespace, with the server's separator ("Lists/work" -> "INBOX.Lists.work")."""
    if name.upper() == "INBOX":
        return "INBOX"
    prefix = namespace.prefix
    if prefix and name.lower().startswith(prefix.lower()):
        return name
    return prefix + name.replace("/", namespace.separator)


def match_folder(wanted: str, listing: Listing) -> str | None:
    """The selectable folder that a configured name means, as the server spells it:
    the name itself, else inside the personal namespace, else the same
    case-insensitively (INBOX always so). None when there is no such folder."""
    ns = listing.namespace
    candidates = [wanted, server_name(wanted, ns), f"INBOX{ns.separator}{wanted}"]
    selectable = [f.name for f in listing.folders if f.selectable]
    for name in candidates:
        if name in selectable:
            return name
    folded = {c.lower() for c in candidates}
    return next((name for name in selectable if name.lower() in folded), None)


def find_junk(listing: Listing, configured: str | None = None) -> JunkFolder:
    """The Junk folder: the configured one (always), else the one marked \\Junk,
    else one with a usual name, else one to create inside the personal namespace."""
    if configured:
        found = match_folder(configured, listing)
        if found:
            return JunkFolder(found, "configured (junk_folder)", exists=True)
        return JunkFolder(
            server_name(configured, listing.namespace), "configured (junk_folder)", exists=False
        )
    for folder in listing.folders:
        if folder.selectable and JUNK_FLAG in {f.lower() for f in folder.flags}:
            return JunkFolder(folder.name, "marked \\Junk (SPECIAL-USE)", exists=True)
    for usual in JUNK_NAMES:
        found = match_folder(usual, listing)
        if found:
            return JunkFolder(found, f"named like {usual!r} (no folder marked \\Junk)", exists=True)
    return JunkFolder(
        server_name("Junk", listing.namespace),
        "none marked \\Junk or with a usual name: to be created",
        exists=False,
    )


def move_method(capabilities: Collection[str]) -> MoveMethod:
    """How spam can reach Junk without ever duplicating or losing mail: MOVE; else
    COPY, then STORE \\Deleted and UID EXPUNGE of exactly those UIDs (UIDPLUS);
    else not at all: a plain EXPUNGE would also remove whatever else the user
    marked \\Deleted, so spam is flagged ($Junk) where it is."""
    caps = {c.upper() for c in capabilities}
    if "MOVE" in caps:
        return "move"
    return "copy" if "UIDPLUS" in caps else "flag"


def explain(capabilities: Collection[str]) -> list[str]:
    """What the server's capabilities mean for spamd, one line each."""
    caps = {c.upper() for c in capabilities}
    method = move_method(caps)
    lines = [
        {
            "move": "MOVE: spam is moved to Junk in one atomic command",
            "copy": "no MOVE, UIDPLUS: spam is copied to Junk, then exactly its UIDs expunged",
            "flag": "WARNING: neither MOVE nor UIDPLUS: spam cannot be moved without touching "
            "other deleted mail; spamd flags it ($Junk) where it is (mode: flag)",
        }[method],
        "IDLE: new mail is seen within a second"
        if "IDLE" in caps
        else "no IDLE: folders are polled every poll_interval",
        "SPECIAL-USE: the Junk folder is found by its \\Junk marker"
        if caps & {"SPECIAL-USE", "LIST-EXTENDED"}
        else "no SPECIAL-USE: the Junk folder is found by its name",
    ]
    if "NAMESPACE" not in caps:
        lines.append("no NAMESPACE: folder names are taken as configured")
    return lines


def missing_folders(wanted: Sequence[str], listing: Listing) -> list[str]:
    return [name for name in wanted if match_folder(name, listing) is None]
