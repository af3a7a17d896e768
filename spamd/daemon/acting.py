"""Acting: carry out recorded decisions against the `Mailbox` port, in the crash-safe order.

A decision is recorded before the server is touched (`state.py`); each status
change below is one `decisions.TRANSITIONS` allows, made before or after the
command as that table requires:

- flags: ``$Junk`` set, then ``pending -> done``;
- MOVE: ``pending -> done`` after it;
- the fallback without MOVE: ``pending -> copying`` *before* the COPY (so a
  crash after it never copies again), then the original deleted, then
  ``copying -> done``; a ``copying`` message found again is copied only if Junk
  lacks it;
- a command the server refused: only what was never copied goes back to
  ``pending`` (an attempt counted); ``copying`` stays, never to be copied again.

Everything here works on the folder it is given: a watcher passes its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from spamd.core.decisions import Status
from spamd.core.identity import mail_key
from spamd.core.learning import JUNK_KEYWORD
from spamd.errors import MailboxError, TransientMailboxError
from spamd.ops.config import Account
from spamd.store.state import Decision, State

if TYPE_CHECKING:
    from spamd.daemon.watcher import Metrics
    from spamd.mail.ports import Mailbox

T = TypeVar("T")


def unless_refused(log: Any, search: Callable[[], T]) -> T | None:
    """The answer to a search for a value from mail, or None when the server
    refused it (logged): that value is given up, never retried by reconnecting."""
    try:
        return search()
    except TransientMailboxError:
        raise
    except MailboxError as exc:
        log.warning("search_refused", error=str(exc))
        return None


def keyword(mailbox: Mailbox, decisions: Sequence[Decision], word: str) -> None:
    if decisions:
        mailbox.add_keywords([d.uid for d in decisions], [word])


def _uidvalidity(decisions: Sequence[Decision]) -> int:
    return decisions[0].uidvalidity if decisions else 0


class Actor:
    """Moves and flags one account's mail as its recorded decisions say."""

    def __init__(self, account: Account, state: State, log: Any, metrics: Metrics) -> None:
        self.account = account
        self._state = state
        self._log = log
        self._metrics = metrics

    def apply(
        self, mailbox: Mailbox, folder: str, junk: str, pending: Sequence[Decision]
    ) -> dict[int, str]:
        """Carry out unfinished decisions of `folder` (selected); returns uid -> outcome
        where it did not go as planned."""
        outcome: dict[int, str] = {}
        flags = [d for d in pending if d.action == "flag"]
        moves = [d for d in pending if d.action == "move"]
        try:
            keyword(mailbox, flags, JUNK_KEYWORD)
            self._state.set_status(flags, Status.DONE)
            if moves and self.account.set_keywords:
                keyword(mailbox, moves, JUNK_KEYWORD)
            try:
                outcome = self._move(mailbox, folder, junk, moves)
            except MailboxError as exc:
                if exc.code != "TRYCREATE" or isinstance(exc, TransientMailboxError):
                    raise
                # Junk was deleted or renamed under us: make it again, then move.
                self._log.warning("junk_missing", junk=junk)
                mailbox.find_junk()
                outcome = self._move(mailbox, folder, junk, moves)
            self._state.set_status(moves, Status.DONE)
            self._metrics.moved(self.account.name, len(moves) - len(outcome))  # not flagged
        except TransientMailboxError:
            raise  # reconnect; the unfinished rows are finished by the next sync
        except MailboxError as exc:  # e.g. NO [OVERQUOTA]: leave it, retry at the next sync
            # Only what was not copied yet is tried afresh; what was copied stays
            # 'copying' (the table forbids going back), to be finished, never copied again.
            uids = {d.uid for d in moves}
            retry = [
                d
                for d in self._state.unfinished(self.account.name, folder, _uidvalidity(moves))
                if d.uid in uids and d.status == Status.PENDING
            ]
            self._state.set_status(retry, Status.PENDING, attempt=True)
            self._log.error("move_failed", uids=sorted(uids), error=str(exc), junk=junk)
            outcome = {d.uid: "move_failed" for d in moves}
            self._metrics.move_failed(self.account.name, len(moves))
        return outcome

    def finish_unfinished(self, mailbox: Mailbox, folder: str, junk: str, uidvalidity: int) -> None:
        """Carry out decisions recorded but not acted on before a crash or a cut connection."""
        unfinished = self._state.unfinished(self.account.name, folder, uidvalidity)
        if not unfinished:
            return
        present = mailbox.existing([d.uid for d in unfinished])
        gone = [d for d in unfinished if d.uid not in present and d.status == Status.PENDING]
        self._state.set_status(gone, Status.GONE)  # moved before a crash, or by the user
        # A 'copying' message gone from here was copied and expunged: done.
        self._state.set_status(
            [d for d in unfinished if d.uid not in present and d.status == Status.COPYING],
            Status.DONE,
        )
        still = [d for d in unfinished if d.uid in present]
        if still:
            self._log.info("finishing", uids=[d.uid for d in still])
            self.apply(mailbox, folder, junk, still)

    def _move(
        self, mailbox: Mailbox, folder: str, junk: str, moves: Sequence[Decision]
    ) -> dict[int, str]:
        """Move to Junk as safely as the server allows (see `layout.move_method`)."""
        if not moves:
            return {}
        method = mailbox.move_method
        if method == "move":
            # A message copied before (the server had no MOVE then) may be in Junk
            # already: it is finished the way it was begun, never moved again.
            fresh = [d.uid for d in moves if d.status != Status.COPYING]
            if fresh:
                mailbox.move(fresh, junk)
            if len(fresh) < len(moves):
                begun = [d for d in moves if d.uid not in fresh]
                self._copy_then_delete(mailbox, folder, junk, begun)
        elif method == "copy":
            self._copy_then_delete(mailbox, folder, junk, moves)
        else:  # "flag": decided as moves before the server lost MOVE and UIDPLUS
            keyword(mailbox, moves, JUNK_KEYWORD)
            copied = [d.uid for d in moves if d.status == Status.COPYING]
            if copied:
                self._log.warning("copy_left_in_junk", uids=copied, junk=junk)
            return {d.uid: "flag" for d in moves}
        return {}

    def _copy_then_delete(
        self, mailbox: Mailbox, folder: str, junk: str, moves: Sequence[Decision]
    ) -> None:
        """The fallback without MOVE, made idempotent by the 'copying' status: a
        message is never copied again once it is 'copying', unless Junk lacks it."""
        copied_before = [d for d in moves if d.status == Status.COPYING]
        to_copy = [d for d in moves if d.status != Status.COPYING]
        if copied_before:
            # A crash may have come after the COPY: copy again only what Junk lacks.
            in_junk = self._copied(mailbox, folder, junk, copied_before)
            again = [d.uid for d in copied_before if d.uid not in in_junk]
            if again:
                mailbox.copy(again, junk)
        if to_copy:
            self._state.set_status(to_copy, Status.COPYING)
            mailbox.copy([d.uid for d in to_copy], junk)
        mailbox.delete([d.uid for d in moves])

    def _copied(
        self, mailbox: Mailbox, folder: str, junk: str, decisions: Sequence[Decision]
    ) -> set[int]:
        """Which of these messages Junk holds already: found by Message-ID, or, for
        mail without one (or one the server refuses to search for), among Junk's
        messages of the same size by content. `folder` is selected again after."""
        sizes = mailbox.sizes([d.uid for d in decisions])
        mailbox.select(junk)
        found = set()
        for d in decisions:
            same_id = (
                unless_refused(
                    self._log, partial(mailbox.search_header, "Message-ID", d.message_id)
                )
                if d.message_id
                else None
            )
            if same_id is not None:
                if same_id:
                    found.add(d.uid)
            elif d.uid in sizes:  # no Message-ID, or one the server cannot search for
                candidates = mailbox.fetch(
                    mailbox.search_size(sizes[d.uid]), self.account.fetch_bytes
                )
                if any(mail_key(m.raw) == d.content_hash for m in candidates):
                    found.add(d.uid)
        mailbox.select(folder)
        return found
