"""`spamd train --from-imap`: first labels from the folders a user already keeps.

For people who start with no corrections. The newest mail in Junk is taken as
spam; the newest mail in the folders where received mail is kept (INBOX,
archives, the user's own folders; not Trash, Drafts, Sent or virtual folders)
as ham, taken in turn from each folder, the watched ones first. At most `limit`
of each class, and when both classes have mail, as many of one as of the other.

The labels are stored as corrections marked `learning.BOOTSTRAP`. Retraining learns
from them, weighted less than a deliberate correction, but they are never
remembered as fingerprints or junked senders and never replayed by the guard:
what a folder holds is only a guess at what the user thinks (an inbox may
still hold unread spam). A user's own correction of the same message wins.
Running it again adds only what is not stored yet. Folders are only examined
(read-only): nothing on the server changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, zip_longest
from typing import TYPE_CHECKING

from spamd.core import learning, personal
from spamd.core.features import extract
from spamd.core.learning import Correction
from spamd.core.message import parse
from spamd.core.scorer import Scorer, load
from spamd.daemon.watcher import Reading, correction, read
from spamd.mail.ports import Fetched, Mailbox
from spamd.ops.config import Account, Config
from spamd.store.state import State, state_path
from spamd.store.versions import ModelStore

if TYPE_CHECKING:
    from spamd.training.retrain import Outcome

DEFAULT_LIMIT = 500  # messages per class
CALIBRATION_LIMIT = 1000  # newest kept and junked messages scored to calibrate an account


@dataclass(frozen=True, slots=True)
class Result:
    spam: int  # labelled spam taken from Junk
    ham: int  # labelled ham taken from the other folders
    added: int  # of those, new to the state store
    folders: tuple[str, ...]  # where the ham came from
    outcome: Outcome


def balanced(spam: int, ham: int, limit: int) -> tuple[int, int]:
    """How many of each class to take: at most `limit`, equal when both have mail."""
    if spam and ham:
        n = min(spam, ham, limit)
        return n, n
    return min(spam, limit), min(ham, limit)


def collect(mailbox: Mailbox, account: Account, scorer: Scorer, limit: int) -> list[Correction]:
    """Labels for the newest mail of the account's Junk and received-mail folders."""
    spam, ham = _candidates(mailbox, account)
    n_spam, n_ham = balanced(len(spam), len(ham), limit)
    return [
        *_fetch(mailbox, account, scorer, spam[:n_spam], "spam"),
        *_fetch(mailbox, account, scorer, ham[:n_ham], "ham"),
    ]


def _candidates(
    mailbox: Mailbox, account: Account
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """The messages of Junk, and of the received-mail folders (watched ones first), newest first."""
    junk = mailbox.find_junk().name
    kept = mailbox.other_folders({junk}, received_only=True)
    ham = _newest(mailbox, sorted(kept, key=lambda f: f not in account.folders))
    return _newest(mailbox, [junk]), ham


def _newest(mailbox: Mailbox, folders: Sequence[str]) -> list[tuple[str, int, int]]:
    """(folder, uidvalidity, uid), newest first, taking from each folder in turn."""
    per_folder = []
    for folder in folders:
        status = mailbox.examine(folder)
        uids = mailbox.uids_since(None)
        per_folder.append([(folder, status.uidvalidity, uid) for uid in reversed(uids)])
    return [x for x in chain.from_iterable(zip_longest(*per_folder)) if x is not None]


def _fetch(
    mailbox: Mailbox,
    account: Account,
    scorer: Scorer,
    picked: Sequence[tuple[str, int, int]],
    label: learning.Label,
) -> list[Correction]:
    out: list[Correction] = []
    for folder, uidvalidity, message, reading in _read(mailbox, account, scorer, picked):
        taken = correction(
            message,
            reading,
            account=account.name,
            label=label,
            how=learning.BOOTSTRAP,
            folder=folder,
            uidvalidity=uidvalidity,
        )
        out.append(dataclasses.replace(taken, fingerprint=None))
    return out


def _read(
    mailbox: Mailbox, account: Account, scorer: Scorer, picked: Sequence[tuple[str, int, int]]
) -> Iterator[tuple[str, int, Fetched, Reading]]:
    """(folder, uidvalidity, message, reading) of each picked message that can be read
    (unreadable mail teaches nothing), folder by folder."""
    for folder, uidvalidity, message in _fetched(mailbox, account, picked):
        reading = read(message.raw, scorer, account.fetch_bytes)
        if not reading.error:
            yield folder, uidvalidity, message, reading


def _fetched(
    mailbox: Mailbox, account: Account, picked: Sequence[tuple[str, int, int]]
) -> Iterator[tuple[str, int, Fetched]]:
    for folder in dict.fromkeys(f for f, _, _ in picked):
        status = mailbox.examine(folder)
        uids = sorted(uid for f, v, uid in picked if f == folder and v == status.uidvalidity)
        for message in mailbox.fetch(uids, account.fetch_bytes):
            yield folder, status.uidvalidity, message


def sample(
    mailbox: Mailbox, account: Account, scorer: Scorer, limit: int = CALIBRATION_LIMIT
) -> tuple[list[personal.Design], list[int]]:
    """The account's newest kept mail (label 0) and Junk (1), at most `limit` of each,
    as the model sees them (`Scorer.design`: no text is kept); unreadable mail is left out."""
    spam, ham = _candidates(mailbox, account)
    designs: list[personal.Design] = []
    labels: list[int] = []
    for label, picked in ((0, ham[:limit]), (1, spam[:limit])):
        for *_, message in _fetched(mailbox, account, picked):
            try:
                parsed = parse(message.raw, account.fetch_bytes)
                if parsed.unreadable:
                    continue
                designs.append(scorer.design(extract(parsed, scorer.channels)))
            except Exception:  # noqa: BLE001, S112 - as `watcher.read`: an unreadable message teaches nothing
                continue
            labels.append(label)
    return designs, labels


def run(
    config: Config,
    account: Account,
    limit: int,
    connect: Callable[[Account], Mailbox],
) -> Result:
    """Collect, store and retrain once (the guard still decides what goes live)."""
    # Here, not at the top: the daemon reads calibration samples with this module
    # and must not load scikit-learn.
    from spamd.training.retrain import retrain  # noqa: PLC0415

    store = ModelStore(config.state_dir, config.model_path)
    scorer = load(store.live_path())
    mailbox = connect(account)
    try:
        labels = collect(mailbox, account, scorer, limit)
    finally:
        mailbox.logout()
    state = State(state_path(config))
    try:
        added = sum(state.add_correction(c) for c in labels)
        outcome = retrain(store, state)
    finally:
        state.close()
    return Result(
        spam=sum(c.label == "spam" for c in labels),
        ham=sum(c.label == "ham" for c in labels),
        added=added,
        folders=tuple(dict.fromkeys(c.folder for c in labels if c.label == "ham")),
        outcome=outcome,
    )
