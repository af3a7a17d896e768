"""When two copies are the same mail, and when an arrival is a rescue. Pure: bytes in, values out.

Mail clients do not upload a message they move the way they found it: mbsync
adds an ``X-TUID:`` header, others add or rewrite ``Status:``, ``X-Status:``,
``X-Keywords:`` or ``X-UID:``, refold long header lines, or turn CRLF into LF.
`mail_key` is a digest that survives all of that: the Message-ID, the header
fields that say what the message is (`IDENTIFYING`, unfolded, whitespace
collapsed) and the first `BODY_BYTES` of the body (line ends made LF, trailing
blanks dropped). Mail without a Message-ID is known by the rest alone.

A *rescue* is a message that leaves Junk while the same mail appears in another
folder, within `RESCUE_WINDOW` seconds of each other (clients that sync a whole
mailbox upload the copy before they delete the original, so either may be seen
first). Anything else that arrives is new mail: a copy of mail spamd junked or
a user labelled spam is spam, however it came; a copy of mail still in Junk may
be the first half of a rescue, so it is held until the window has passed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

IDENTIFYING = (
    "message-id",
    "from",
    "sender",
    "to",
    "cc",
    "subject",
    "date",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
BODY_BYTES = 16 * 1024  # of the body, after normalising: copies cut at a fetch cap agree
RESCUE_WINDOW = 120.0  # seconds between a departure from Junk and the copy's arrival
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_TRAILING = re.compile(rb"[ \t]+\n")
_SPACE = re.compile(rb"\s+")


def split(raw: bytes) -> tuple[bytes, bytes]:
    """Header and body of a message; all header when there is no blank line."""
    match = _BLANK_LINE.search(raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def header_fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, unfolded value with runs of whitespace made one space), in order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in header.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b" " + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.strip().lower(), value))
    return [(name, _SPACE.sub(b" ", value).strip()) for name, value in fields]


def message_id(raw: bytes) -> str:
    """The Message-ID header's value ("" when there is none)."""
    for name, value in header_fields(split(raw)[0]):
        if name == b"message-id":
            return value.decode("ascii", "replace")
    return ""


def mail_key(raw: bytes) -> str:
    """A digest two uploads of one message share, whatever a client did to them (see above)."""
    header, body = split(raw)
    digest = hashlib.sha256()
    wanted = {name.encode() for name in IDENTIFYING}
    for name, value in header_fields(header):
        if name in wanted:
            digest.update(name + b":" + value + b"\n")
    digest.update(b"\n")
    normal = _TRAILING.sub(b"\n", body.replace(b"\r\n", b"\n") + b"\n").rstrip(b"\n")
    digest.update(normal[:BODY_BYTES])
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Sighting:
    """A message seen arriving in a folder, or leaving Junk."""

    key: str  # `mail_key`
    at: float  # time.time() when spamd saw it
    folder: str = ""
    uid: int = 0


def rescue_of(
    departure: Sighting, arrivals: Iterable[Sighting], window: float = RESCUE_WINDOW
) -> Sighting | None:
    """The arrival that a departure from Junk rescued: the same mail, seen within
    `window` seconds of it (before or after); the closest in time if several."""
    close = [a for a in arrivals if a.key == departure.key and abs(a.at - departure.at) <= window]
    return min(close, key=lambda a: abs(a.at - departure.at), default=None)


Arrival = Literal["new", "rescued", "known-spam", "held"]


def arrival(*, label: Literal["spam", "ham"] | None, in_junk: bool) -> Arrival:
    """What a message arriving outside Junk is, from what is known about the same mail.

    `label`: the user's latest label of it, else "spam" when spamd junked it;
    `in_junk`: the same mail is in Junk now. The user's latest word wins; a copy
    of known spam is spam; one whose original is still in Junk waits for the
    departure that would make it a rescue (`held`).
    """
    if label == "ham":
        return "rescued"
    if in_junk:
        return "held"
    if label == "spam":
        return "known-spam"
    return "new"
