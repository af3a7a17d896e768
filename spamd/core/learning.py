"""What users teach by moving mail, and how spamd remembers it. Pure: no I/O.

A *correction* is a label a user gave a message through their mail client:

* ``spam``: they put a message into Junk that spamd had left alone, or set a
  junk keyword (`JUNK_KEYWORDS`) on it;
* ``ham``: they took a message spamd had junked out of Junk into another folder
  (not Trash), or set a not-junk keyword (`NOT_JUNK_KEYWORDS`) on it.

Deleting, expunging or trashing a message teaches nothing. `spamd train
--from-imap` adds ``BOOTSTRAP`` labels: guesses from what the folders hold,
which retraining uses but nothing remembers.

Two memories keep spamd from repeating a mistake before (and whatever) the
retrained model says: the *fingerprint* of every corrected message (a 64-bit
SimHash of its normalised words, so a copy that differs in names, numbers,
tracking ids or word order matches too), and the senders a user junked again and
again (`SENDER_JUNKED_AFTER`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from spamd.core.features import Features

Label = Literal["spam", "ham"]

# RFC 5788 keywords, and the variants mail clients set (Thunderbird: Junk/NonJunk;
# Apple Mail: Junk/NotJunk). Compared case-insensitively.
JUNK_KEYWORD = "$Junk"
NOT_JUNK_KEYWORD = "$NotJunk"
JUNK_KEYWORDS = (JUNK_KEYWORD, "Junk")
NOT_JUNK_KEYWORDS = (NOT_JUNK_KEYWORD, "NotJunk", "NonJunk")

FINGERPRINT_CHANNELS = ("subject", "body")  # the features `fingerprint` reads
MIN_FINGERPRINT_WORDS = 12  # shorter mail ("thanks!") is too generic to remember
NEAR_BITS = 8  # of 64: one word in 40 changed moves ~8 bits; random pairs match ~3e-10
SENDER_JUNKED_AFTER = 3  # user-junked messages from one address (none rescued) -> junk it
BOOTSTRAP = "bootstrap"  # Correction.how of a label guessed from a folder, not given by a user


@dataclass(frozen=True, slots=True)
class Correction:
    account: str
    label: Label
    how: str  # moved_to_junk | rescued | keyword | BOOTSTRAP
    folder: str  # where the message was when the label was seen
    message_id: str
    content_hash: str
    fingerprint: int | None
    sender: str
    subject: str
    raw: bytes  # at most the account's fetch cap: what retraining needs
    uidvalidity: int = 0
    uid: int = 0
    at: float = 0.0  # time.time() when spamd observed the user's action
    id: int = 0  # in the state store
    set_aside: bool = False  # by a rollback: stored, not learnt


def has_keyword(flags: Iterable[str], keywords: Iterable[str]) -> bool:
    wanted = {k.lower() for k in keywords}
    return any(f.lower() in wanted for f in flags)


def fingerprint(features: Features) -> int | None:
    """A 64-bit SimHash of the distinct words of subject and body; None for short mail.

    Words with digits (dates, amounts, ids) and very long ones (tokens, hashes) are
    left out, so copies of one campaign with different tracking data agree.
    """
    words = {
        w: h
        for counted in map(features.counted, FINGERPRINT_CHANNELS)
        for w, h in zip(counted.tokens, counted.hashes.tolist(), strict=True)
        if "0" not in w and " " not in w and len(w) <= 30  # digits were folded to 0
    }
    if len(words) < MIN_FINGERPRINT_WORDS:
        return None
    crc = np.fromiter(words.values(), dtype=np.uint64, count=len(words))
    hashes = _spread(crc)
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    majority = bits.sum(axis=0, dtype=np.int64) * 2 > len(words)
    return int(np.packbits(majority, bitorder="little").view(np.uint64)[0])


def _spread(x: np.ndarray) -> np.ndarray:
    """32-bit hashes spread over 64 bits (the SplitMix64 finaliser; wraps modulo 2**64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    spread: np.ndarray = x ^ (x >> np.uint64(31))
    return spread


class Fingerprints:
    """The fingerprints of one account's corrected messages and their latest labels."""

    def __init__(self, entries: Iterable[tuple[int, Label]] = ()) -> None:
        self._labels: dict[int, Label] = dict(entries)
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._labels)

    def add(self, fp: int, label: Label) -> None:
        if self._labels.get(fp) != label:
            self._labels[fp] = label
            self._array = None

    def match(self, fp: int | None) -> Label | None:
        """The label of the nearest remembered message within `NEAR_BITS`; ham wins ties."""
        if fp is None or not self._labels:
            return None
        if fp in self._labels:
            return self._labels[fp]
        if self._array is None:
            self._array = np.fromiter(self._labels, dtype=np.uint64, count=len(self._labels))
        distance = np.bitwise_count(self._array ^ np.uint64(fp))
        close = np.flatnonzero(distance <= NEAR_BITS)
        if close.size == 0:
            return None
        labels = {self._labels[int(self._array[i])] for i in close}
        return "ham" if "ham" in labels else "spam"


def to_signed(fp: int) -> int:
    """SQLite integers are signed 64-bit."""
    return fp - (1 << 64) if fp >= 1 << 63 else fp


def to_unsigned(fp: int) -> int:
    return fp + (1 << 64) if fp < 0 else fp
