"""One watched folder of one account: sync, classify, act, then IDLE or wait for a poll.

A `FolderWatcher` owns one IMAP connection, used only by its own thread. Its
collaborators are passed in: a `connect` function (returns an
`imap.Connection`-like object), the current model, the state store, a logger
and a stop event. The lifecycle is a loop of states:

    connecting -> syncing -> waiting (IDLE, or for a poll) -> syncing ...
    any error  -> backing off (capped exponential, jittered) -> connecting

`sync` is written so that a crash at any point is safe (see `state.py`).

A sync of new mail composes four pieces, each readable and tested on its own:

    batching  `core.batching.fetch_ahead`: which batch is fetched, decided, acted on when
    rescues   `core.rescues`: what each arrival is (rescued, held, known spam, new)
    deciding  `deciding.decide_all`: readings and arrivals -> the decisions recorded
    acting    `acting.Actor`: decisions carried out, in the order `decisions` makes safe

The Junk watcher (`JunkWatcher`) uses `core.rescues` for what arrives in Junk
and leaves it; its folder is passed down explicitly.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from spamd.core import batching, identity, learning, policy, rescues
from spamd.core.calibration import Calibration
from spamd.core.decisions import Status
from spamd.core.features import extract
from spamd.core.layout import Listing, MoveMethod
from spamd.core.learning import NOT_JUNK_KEYWORD, Correction
from spamd.core.message import parse
from spamd.core.scorer import Scorer
from spamd.daemon import deciding
from spamd.daemon.acting import Actor, keyword, unless_refused
from spamd.errors import AuthError, ConfigError, MailboxError, SetupError
from spamd.mail.ports import Fetched, FolderStatus, Mailbox
from spamd.ops.config import Account, Mode
from spamd.store.state import Decision, FolderMark, State

BATCH = 200  # UIDs fetched, decided and recorded together
BATCHES_AHEAD = 1  # fetched and being read (by a `PoolReader`) while one is decided
ACT_EVERY = 1000  # moves (or flags) carried out together; see `FolderWatcher.handle`
IDLE_REFRESH = 600.0  # RFC 2177: re-issue IDLE at least every 29 minutes; we do every <= 10
IDLE_TICK = 1.0  # how often an IDLE wait looks at the stop and wake flags
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
AUTH_BACKOFF_MAX = 1800.0  # a refused password is retried, but rarely
SETUP_RETRY = 1800.0  # a setup error (see errors.SetupError) is retried this rarely


class Metrics(Protocol):
    """Where a watcher counts what it did (`telemetry.Telemetry` provides it)."""

    def message(self, account: str, action: str, reason: str) -> None: ...
    def classified(self, seconds: float) -> None: ...
    def moved(self, account: str, messages: int) -> None: ...
    def move_failed(self, account: str, messages: int) -> None: ...
    def connected(self, account: str, *, again: bool) -> None: ...


class NoMetrics:
    """Counts nothing (a backlog scan, tests)."""

    def message(self, account: str, action: str, reason: str) -> None:
        pass

    def classified(self, seconds: float) -> None:
        pass

    def moved(self, account: str, messages: int) -> None:
        pass

    def move_failed(self, account: str, messages: int) -> None:
        pass

    def connected(self, account: str, *, again: bool) -> None:
        pass


@dataclass
class Health:
    """What the service reports about one watcher (for logs, READY and /healthz)."""

    connected: bool = False
    last_sync: float = 0.0  # time.time() of the last completed sync
    last_error: str = ""
    setup_error: str = ""  # a SetupError (with its fix), while it lasts
    failures: int = 0  # consecutive
    junk_folder: str = ""
    idle: bool = False
    handled: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # action -> messages


class Backoff:
    """Capped exponential backoff with full jitter."""

    def __init__(self, rng: random.Random, first: float = BACKOFF_FIRST) -> None:
        self._rng = rng
        self._first = first
        self.failures = 0

    def next(self, cap: float) -> float:
        self.failures += 1
        ceiling = min(cap, self._first * 2 ** (self.failures - 1))
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True, slots=True)
class Reading:
    """What the model and the headers say about one message."""

    content_hash: str  # `identity.mail_key`: how a message is recognised in another folder
    score: float = 0.0
    sender: str = ""
    message_id: str = ""
    subject: str = ""
    fingerprint: int | None = None
    error: str = ""  # set when the message could not be read: then leave it alone
    partial: bool = False  # read only in part: the time budget ran out
    seconds: float = 0.0  # how long reading it took (parse, features, score)


content_hash = identity.mail_key


def read(raw: bytes, scorer: Scorer, max_bytes: int, *, fingerprint: bool = True) -> Reading:
    """Score a message; `fingerprint=False` leaves out its fingerprint (see `Memory.remembers`)."""
    started = time.perf_counter()
    digest = content_hash(raw)
    try:
        parsed = parse(raw, max_bytes)
        if parsed.unreadable:
            return Reading(digest, error=parsed.unreadable, seconds=time.perf_counter() - started)
        channels = {*scorer.channels, *(learning.FINGERPRINT_CHANNELS if fingerprint else ())}
        features = extract(parsed, channels)
        return Reading(
            digest,
            scorer.score_extracted(features),
            parsed.sender.address,
            parsed.message_id[:500],
            parsed.subject[:300],
            learning.fingerprint(features) if fingerprint else None,
            partial=parsed.partial,
            seconds=time.perf_counter() - started,
        )
    except Exception as exc:  # noqa: BLE001 - when in doubt, leave the message alone
        return Reading(digest, error=type(exc).__name__, seconds=time.perf_counter() - started)


class Memory:
    """One account's corrections as its watchers use them (shared, thread-safe).

    `learn` stores a correction and tells `on_learned` (the service schedules a
    retrain); `decide` weighs fingerprints and repeatedly junked senders in.
    """

    def __init__(
        self,
        account: str,
        state: State,
        log: Any,
        on_learned: Callable[[Correction], None] = lambda c: None,
    ) -> None:
        self.account = account
        self._state = state
        self._log = log.bind(account=account)
        self._on_learned = on_learned
        self._lock = threading.Lock()
        self._fingerprints = learning.Fingerprints(state.fingerprints(account))
        self._senders = state.senders_junked(account, learning.SENDER_JUNKED_AFTER)
        self.calibration: Calibration | None = None  # the account's own threshold, once set

    @property
    def remembers(self) -> bool:
        """Whether any correction has a fingerprint to match: until one does, reading
        new mail can skip computing fingerprints (about a tenth of its cost)."""
        return len(self._fingerprints) > 0

    def reload(self) -> None:
        """Read the remembered labels again (corrections were set aside or forgotten)."""
        fingerprints = learning.Fingerprints(self._state.fingerprints(self.account))
        senders = self._state.senders_junked(self.account, learning.SENDER_JUNKED_AFTER)
        with self._lock:
            self._fingerprints, self._senders = fingerprints, senders

    def learn(self, correction: Correction) -> bool:
        """Store a label, replacing an earlier one; False if the message had it already."""
        correction = dataclasses.replace(correction, at=correction.at or time.time())
        if not self._state.add_correction(correction):
            return False
        with self._lock:
            if correction.fingerprint is not None:
                self._fingerprints.add(correction.fingerprint, correction.label)
            self._senders = self._state.senders_junked(self.account, learning.SENDER_JUNKED_AFTER)
        self._log.info(
            "correction",
            label=correction.label,
            how=correction.how,
            folder=correction.folder,
            uid=correction.uid,
            message_id=correction.message_id,
        )
        self._on_learned(correction)
        return True

    def decide(
        self,
        reading: Reading,
        threshold: float,
        *,
        mode: Mode,
        allow: Collection[str] = (),
        block: Collection[str] = (),
        known_spam: bool = False,
    ) -> policy.Verdict:
        """The verdict on a readable message, with what the user taught remembered."""
        with self._lock:
            remembered = self._fingerprints.match(reading.fingerprint)
            sender_junked = reading.sender in self._senders
        calibrated = self.calibration
        return policy.decide(
            reading.score,
            calibrated.threshold if calibrated else threshold,
            reading.sender,
            mode=mode,
            allow=allow,
            block=block,
            remembered=remembered,
            sender_junked=sender_junked,
            move_at=calibrated.move_at if calibrated else 0.0,
            known_spam=known_spam,
        )


def correction(
    message: Fetched,
    reading: Reading,
    *,
    account: str,
    label: learning.Label,
    how: str,
    folder: str,
    uidvalidity: int,
) -> Correction:
    return Correction(
        account=account,
        label=label,
        how=how,
        folder=folder,
        message_id=reading.message_id,
        content_hash=reading.content_hash,
        fingerprint=reading.fingerprint,
        sender=reading.sender,
        subject=reading.subject,
        raw=message.raw,
        uidvalidity=uidvalidity,
        uid=message.uid,
    )


Readings = Callable[[], list[Reading]]  # a batch's readings, waited for when called
# Starts reading a batch: scorer, raw messages, max_bytes, with fingerprints or not.
Reader = Callable[[Scorer, Sequence[bytes], int, bool], Readings]


def read_all(
    scorer: Scorer, raws: Sequence[bytes], max_bytes: int, fingerprint: bool = True
) -> Readings:
    """Reads a batch here and now (a `Reader`; `service.PoolReader` reads in other processes)."""
    readings = [read(raw, scorer, max_bytes, fingerprint=fingerprint) for raw in raws]
    return lambda: readings


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch fetched and being read, waiting to be decided and acted on."""

    fetched: list[Fetched]
    readings: Readings
    scorer: Scorer
    fingerprinted: bool  # read with fingerprints (else: the account had no corrections)
    mark: FolderMark | None
    size: int  # UIDs the batch covers, decided before or not (for progress)
    started: float  # perf_counter() before the FETCH


@dataclass(frozen=True, slots=True)
class _Decided:
    """A batch decided and recorded, waiting to be acted on."""

    decisions: list[Decision]
    started: float  # perf_counter() before the FETCH

    @property
    def pending(self) -> int:
        return sum(d.status == Status.PENDING for d in self.decisions)


class FolderWatcher:
    # Changes that call for another sync: mail arriving, keywords set (FETCH).
    NEWS: tuple[str, ...] = ("EXISTS", "FETCH")

    def __init__(
        self,
        account: Account,
        folder: str,
        *,
        connect: Callable[[Account], Mailbox],
        model: Callable[[], Scorer],
        state: State,
        log: Any,
        stop: threading.Event,
        read: Reader = read_all,
        memory: Memory | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        rescue_window: float = identity.RESCUE_WINDOW,
    ) -> None:
        self.account = account
        self.folder = folder
        self._connect = connect
        self._model = model
        self._read = read
        self._memory = memory or Memory(account.name, state, log)
        self._state = state
        self._log = log.bind(account=account.name, folder=folder)
        self._stop = stop
        self._rng = rng or random.Random()
        self._metrics = metrics or NoMetrics()
        self.wake = threading.Event()  # set by a poll job, housekeeping or shutdown
        self.health = Health()
        self._mode: Mode = account.mode  # "flag" where the server cannot move safely
        self._said_unsafe = False
        self._rescue_window = rescue_window
        self._held_timer: threading.Timer | None = None
        self._actor = Actor(account, state, self._log, self._metrics)

    # -- the thread -------------------------------------------------------------

    def run(self) -> None:
        backoff = Backoff(self._rng)
        connects = 0
        while not self._stop.is_set():
            mailbox: Mailbox | None = None
            try:
                mailbox = self._connect(self.account)
                junk = self.prepare(mailbox)
                self._metrics.connected(self.account.name, again=connects > 0)
                connects += 1
                self._serve(mailbox, junk, backoff)
                delay = 0.0
            except SetupError as exc:
                delay = self._setup_failed(exc, backoff)
            except (AuthError, ConfigError) as exc:  # refused, or no password to offer
                delay = self._failed(exc, backoff, AUTH_BACKOFF_MAX)
            except MailboxError as exc:  # transient or a refused command: reconnect
                delay = self._failed(exc, backoff, BACKOFF_MAX)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the watcher for good
                self._log.exception("internal_error", kind=type(exc).__name__)
                delay = self._failed(exc, backoff, BACKOFF_MAX)
            finally:
                self.health.connected = False
                if mailbox is not None:
                    mailbox.logout()
            self._stop.wait(delay)
        self._log.info("stopped")

    def prepare(self, mailbox: Mailbox) -> str:
        """Find the folders on the server as it lays them out (logging which Junk
        folder and why), and how spam can reach Junk; returns Junk's name."""
        listing = mailbox.listing()
        junk = mailbox.find_junk(listing)
        self._find_own(mailbox, listing)
        self.health.connected, self.health.junk_folder = True, junk.name
        self.health.idle = self.account.idle and mailbox.has_idle
        self._log.info(
            "connected",
            junk=junk.name,
            junk_why=junk.how,
            idle=self.health.idle,
            moves=mailbox.move_method,
        )
        return junk.name

    def _find_own(self, mailbox: Mailbox, listing: Listing) -> None:
        """The watched folder as the server spells it, and the mode this server allows."""
        self.folder = mailbox.find_folder(self.folder, listing)
        self._mode = self._safe_mode(mailbox.move_method)

    def _safe_mode(self, method: MoveMethod) -> Mode:
        """The account's mode, but flag where mail cannot be moved without touching
        other mail (neither MOVE nor UIDPLUS: see `layout.move_method`)."""
        if self.account.mode != "move" or method != "flag":
            return self.account.mode
        if not self._said_unsafe:
            self._said_unsafe = True
            self._log.warning(
                "cannot_move_safely",
                mode="flag",
                why="the server has neither MOVE nor UIDPLUS: removing the original after "
                "a COPY would also expunge other mail marked \\Deleted",
                fix="spam is flagged $Junk where it is; set mode: flag to silence this",
            )
        return "flag"

    def _setup_failed(self, exc: SetupError, backoff: Backoff) -> float:
        """Not network trouble: say what to fix, and look again only rarely."""
        backoff.failures += 1
        delay = SETUP_RETRY * self._rng.uniform(0.9, 1.0)
        self.health.last_error, self.health.failures = str(exc), backoff.failures
        self.health.setup_error = str(exc)
        self._log.error("setup_error", error=str(exc), fix=exc.fix, retry_in=round(delay, 1))
        return delay

    def _failed(self, exc: Exception, backoff: Backoff, cap: float) -> float:
        delay = backoff.next(cap)
        self.health.last_error, self.health.failures = str(exc), backoff.failures
        serious = isinstance(exc, AuthError | ConfigError) or backoff.failures > 3
        level = "error" if serious else "warning"
        getattr(self._log, level)(
            "connection_failed",
            error=str(exc),
            kind=type(exc).__name__,
            retry_in=round(delay, 1),
            failures=backoff.failures,
        )
        return delay

    def _serve(self, mailbox: Mailbox, junk: str, backoff: Backoff) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            self.sync(mailbox, junk)
            backoff.reset()
            self.health.failures, self.health.last_error, self.health.setup_error = 0, "", ""
            if mailbox.reported(self.NEWS):  # during the sync: IDLE will not tell again
                self.wake.set()
            if self.health.idle:
                self._idle(mailbox)
            else:
                self.wake.wait()  # an APScheduler job wakes polling folders

    def _idle(self, mailbox: Mailbox) -> None:
        refresh_at = time.monotonic() + IDLE_REFRESH * self._rng.uniform(0.8, 1.0)
        while not self._stop.is_set() and not self.wake.is_set():
            left = refresh_at - time.monotonic()
            if left <= 0:
                break
            if mailbox.idle_wait(min(IDLE_TICK, left)).changed:
                break
        mailbox.noop()  # leaves IDLE; also proves the connection is alive

    # -- one sync ---------------------------------------------------------------

    def sync(self, mailbox: Mailbox, junk: str) -> None:
        """Handle every message that arrived since the last sync, and finish unfinished moves."""
        status = mailbox.select(self.folder)
        name = self.account.name
        mark = self._state.mark(name, self.folder)
        skip: set[int] = set()
        if mark is None:
            start = 0 if self.account.scan_existing else status.uidnext - 1
            mark = FolderMark(status.uidvalidity, max(0, start))
            self._state.set_mark(name, self.folder, mark)
            self._log.info(
                "first_sync", existing=status.exists, scan_existing=self.account.scan_existing
            )
        elif mark.uidvalidity != status.uidvalidity:
            skip = self._uidvalidity_changed(mailbox, mark, status)
            mark = FolderMark(status.uidvalidity, 0)
        self.settle_held(status.uidvalidity)
        self.finish_unfinished(mailbox, junk, status.uidvalidity)
        self.handle(mailbox, junk, status.uidvalidity, mailbox.uids_after(mark.last_uid), skip=skip)
        self.settle_held(status.uidvalidity)  # wake up when what was held just now is due
        ours = self._state.flagged_uids(name, self.folder, status.uidvalidity)
        self.learn_keywords(
            mailbox,
            self.folder,
            status.uidvalidity,
            learning.JUNK_KEYWORDS,
            label="spam",
            ignore=ours,
        )
        self.health.last_sync = time.time()

    def learn_keywords(
        self,
        mailbox: Mailbox,
        folder: str,
        uidvalidity: int,
        keywords: Sequence[str],
        *,
        label: learning.Label,
        ignore: Collection[int] = (),
    ) -> None:
        """Labels a mail client set as keywords on messages of `folder` (selected)."""
        corrected = self._state.corrected_uids(self.account.name, folder, uidvalidity)
        uids = [
            u for u in mailbox.search_keywords(keywords) if u not in corrected and u not in ignore
        ]
        if not uids:
            return
        for message, reading in self._fetch_read(mailbox, uids):
            self._learn(label, "keyword", uidvalidity, message, reading, folder=folder)

    def _fetch_read(self, mailbox: Mailbox, uids: Sequence[int]) -> list[tuple[Fetched, Reading]]:
        fetched = mailbox.fetch(uids, self.account.fetch_bytes)
        raws = [m.raw for m in fetched]
        # With fingerprints: what is read here becomes corrections.
        readings = self._read(self._model(), raws, self.account.fetch_bytes, True)()
        return list(zip(fetched, readings, strict=True))

    def _learn(
        self,
        label: learning.Label,
        how: str,
        uidvalidity: int,
        message: Fetched,
        reading: Reading,
        *,
        folder: str,
    ) -> bool:
        return self._memory.learn(
            correction(
                message,
                reading,
                account=self.account.name,
                label=label,
                how=how,
                folder=folder,
                uidvalidity=uidvalidity,
            )
        )

    def handle(
        self,
        mailbox: Mailbox,
        junk: str,
        uidvalidity: int,
        uids: Sequence[int],
        *,
        skip: set[int] | None = None,
        advance: bool = True,
        progress: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Decide and act on these UIDs of the selected folder, in batches.

        `advance` moves the folder's mark past them (the daemon's new mail);
        a backlog scan leaves the mark alone. UIDs decided before are skipped.
        Batches overlap: the next one is fetched and being read (by a
        `PoolReader`'s processes) while this one is decided. Decisions are
        recorded before they are acted on, and acted on in groups of up to
        `ACT_EVERY`: a MOVE costs the server a look at the whole folder.
        """
        account, folder = self.account.name, self.folder

        def start(batch: list[int]) -> _Batch:
            done = self._state.decided_uids(account, folder, uidvalidity, batch)
            todo = [u for u in batch if u not in done and u not in (skip or ())]
            mark = FolderMark(uidvalidity, batch[-1]) if advance else None
            return self._start(mailbox, todo, mark, len(batch))

        batching.fetch_ahead(
            batching.chunks(uids, BATCH),
            start=start,
            decide=lambda batch: self._decide_batch(uidvalidity, batch, progress),
            act=lambda decided: self._act(mailbox, junk, decided),
            pending=lambda decided: decided.pending,
            ahead=BATCHES_AHEAD,
            act_every=ACT_EVERY,
            stopped=self._stop.is_set,
        )

    def _uidvalidity_changed(
        self, mailbox: Mailbox, mark: FolderMark, status: FolderStatus
    ) -> set[int]:
        """Old UIDs mean nothing now: re-read the folder, skipping messages already decided."""
        self._log.warning("uidvalidity_changed", old=mark.uidvalidity, new=status.uidvalidity)
        self._state.set_mark(self.account.name, self.folder, FolderMark(status.uidvalidity, 0))
        decided = self._state.decided_message_ids(self.account.name, self.folder)
        ids = mailbox.fetch_message_ids(mailbox.uids_after(0))
        return {uid for uid, mid in ids.items() if mid and mid in decided}

    def _start(
        self, mailbox: Mailbox, uids: list[int], mark: FolderMark | None, size: int
    ) -> _Batch:
        started = time.perf_counter()
        fetched = mailbox.fetch(uids, self.account.fetch_bytes) if uids else []
        scorer = self._model()
        fingerprint = self._memory.remembers
        raws = [m.raw for m in fetched]
        readings = self._read(scorer, raws, self.account.fetch_bytes, fingerprint)
        return _Batch(fetched, readings, scorer, fingerprint, mark, size, started)

    def _decide_batch(
        self, uidvalidity: int, batch: _Batch, progress: Callable[[int], None]
    ) -> _Decided:
        """Decide a batch and record the decisions (and the folder's mark with them)."""
        readings = batch.readings()
        # What is known of the same mail: see `rescues.arrivals`.
        keys = [r.content_hash for r in readings]
        labels = self._state.labels(self.account.name, keys)
        since = time.time() - self._rescue_window
        in_junk = self._state.in_junk(self.account.name, keys, since)
        if rescues.needs_fingerprints(
            fingerprinted=batch.fingerprinted, in_junk=in_junk, remembers=self._memory.remembers
        ):  # rare: read again
            raws = [m.raw for m in batch.fetched]
            readings = read_all(batch.scorer, raws, self.account.fetch_bytes)()
        arrivals = rescues.arrivals([r.content_hash for r in readings], labels, in_junk)
        for message, reading, arrival in zip(batch.fetched, readings, arrivals, strict=True):
            self._metrics.classified(reading.seconds)
            if arrival == "rescued":  # kept whatever it reads (see `deciding.verdict`)
                continue
            if reading.error:
                self._log.error("undecidable", uid=message.uid, error=reading.error)
            elif reading.partial:
                self._log.warning("read_partially", uid=message.uid)
        decisions = deciding.decide_all(
            [m.uid for m in batch.fetched],
            readings,
            arrivals,
            rules=deciding.Rules(
                self._mode,
                self.account.allow,
                self.account.block,
                flag_unreadable=self.account.unreadable == "flag",
            ),
            judge=self._memory,
            where=deciding.Where(
                self.account.name,
                self.folder,
                uidvalidity,
                batch.scorer.threshold,
                batch.scorer.version,
            ),
        )
        self._state.record(decisions, self.account.name, self.folder, batch.mark)
        progress(batch.size)
        return _Decided(decisions, batch.started)

    def _act(self, mailbox: Mailbox, junk: str, decided: Sequence[_Decided]) -> None:
        """Carry out recorded decisions, then log one line per message."""
        decisions = [d for group in decided for d in group.decisions]
        pending = [d for d in decisions if d.status == Status.PENDING]
        outcome = self._actor.apply(mailbox, self.folder, junk, pending)
        if self.account.set_keywords:
            keyword(mailbox, [d for d in decisions if d.action == "keep"], NOT_JUNK_KEYWORD)
        now = time.perf_counter()
        for group in decided:
            # From FETCH to acted on, per message (batches overlap: an upper bound).
            ms = (now - group.started) * 1000 / max(1, len(group.decisions))
            for d in group.decisions:
                action = outcome.get(d.uid, "held" if d.status == Status.HELD else d.action)
                self.health.handled += 1
                self.health.counts[action] = self.health.counts.get(action, 0) + 1
                self._log.info(
                    "message",
                    uid=d.uid,
                    message_id=d.message_id,  # finds it in a mail client; the UID does not
                    score=round(d.score, 4),
                    action=action,
                    reason=d.reason,
                    model=d.model_version,
                    ms=round(ms, 1),
                )
                self._metrics.message(self.account.name, action, d.reason)

    def settle_held(self, uidvalidity: int) -> None:
        """A held copy whose original stayed in Junk for the whole rescue window was
        delivered again: spam, to be moved now. Until then, wake up when it is due."""
        held = self._state.held_in(self.account.name, self.folder, uidvalidity)
        now = time.time()
        due = [d for d in held if now - d.at >= self._rescue_window]
        self._state.set_status(due, Status.PENDING)
        for d in due:
            self._log.info("redelivered", uid=d.uid, reason=d.reason)
            self.wake.set()  # moved at the next sync
        waiting = [d.at + self._rescue_window - now for d in held if d not in due]
        if waiting:
            if self._held_timer is not None:
                self._held_timer.cancel()
            self._held_timer = threading.Timer(min(waiting) + 0.1, self.wake.set)
            self._held_timer.daemon = True
            self._held_timer.start()

    def finish_unfinished(self, mailbox: Mailbox, junk: str, uidvalidity: int) -> None:
        """Carry out decisions recorded but not acted on before a crash or a cut connection."""
        self._actor.finish_unfinished(mailbox, self.folder, junk, uidvalidity)


class JunkWatcher(FolderWatcher):
    """Watches an account's Junk folder for what users put in and take out.

    What arrives there and was not moved by spamd is a spam label; what leaves
    and turns up in another folder (not Trash) is a ham label; what leaves for
    Trash or for nowhere teaches nothing. The folder is found on connecting.
    """

    NEWS = ("EXISTS", "EXPUNGE", "FETCH")  # mail put in or taken out, keywords set

    def __init__(self, account: Account, **kwargs: Any) -> None:
        super().__init__(account, "", **kwargs)
        self._departed_keys: set[str] = set()  # recent departures already handled
        # Its lines name the folder: the configured one, or the \Junk one sought.
        self._log = self._log.bind(folder=account.junk_folder or "\\Junk")

    def _find_own(self, mailbox: Mailbox, listing: Listing) -> None:
        """Nothing: this watcher's folder is Junk, and it moves no mail."""

    def prepare(self, mailbox: Mailbox) -> str:
        """As a folder watcher's; this watcher's folder is the Junk folder found (for
        /healthz). Its sync is given that folder, and passes it on explicitly."""
        junk = super().prepare(mailbox)
        if self.folder != junk:
            self.folder = junk
            self._log = self._log.bind(folder=junk)
        return junk

    def sync(self, mailbox: Mailbox, junk: str) -> None:
        name = self.account.name
        status = mailbox.select(junk)
        mark = self._state.mark(name, junk)
        if mark is None or mark.uidvalidity != status.uidvalidity:
            # A first look: what Junk holds already is not anybody's correction.
            mark = FolderMark(status.uidvalidity, max(0, status.uidnext - 1))
            self._state.update_junk_items(name, status.uidvalidity, [], [], mark=mark, folder=junk)
            self._log.info("junk_baseline", existing=status.exists)
        known = self._state.junk_items(name, status.uidvalidity)
        gone = sorted(set(known) - mailbox.existing(sorted(known)))
        new = mailbox.uids_after(mark.last_uid)
        for start in range(0, len(new), BATCH):
            added = self._arrived(mailbox, junk, status.uidvalidity, new[start : start + BATCH])
            last = FolderMark(status.uidvalidity, new[min(len(new), start + BATCH) - 1])
            self._state.update_junk_items(
                name, status.uidvalidity, added, [], mark=last, folder=junk
            )
        unseen = self._unseen_departures(mailbox, status.uidvalidity)
        for uid in gone:
            self._departed_keys.add(known[uid][1])
            self._departed(mailbox, junk, *known[uid])
        for message_id, key in unseen:
            self._departed(mailbox, junk, message_id, key, "spamd")
        self._state.update_junk_items(name, status.uidvalidity, [], gone, mark=None, folder=junk)
        if gone or unseen:
            # Locating departures selected other folders: what happened in Junk
            # meanwhile (mail put in or taken out) is not told on selecting it
            # again, so look again.
            mailbox.select(junk)
            self.wake.set()
        self.learn_keywords(
            mailbox, junk, status.uidvalidity, learning.NOT_JUNK_KEYWORDS, label="ham"
        )
        self.health.last_sync = time.time()

    def _unseen_departures(self, mailbox: Mailbox, uidvalidity: int) -> list[tuple[str, str]]:
        """Mail spamd moved to Junk lately that left again before this watcher saw it
        (a quick user, or this watcher reconnecting): departures too. Junk is selected."""
        there = {
            key for _, key, _ in self._state.junk_items(self.account.name, uidvalidity).values()
        }
        since = time.time() - self._rescue_window
        recent = self._state.recent_moves(self.account.name, since)
        self._departed_keys &= {key for _, key in recent}
        unseen = []
        for message_id, key in recent:
            if not rescues.may_have_departed(
                message_id, key, there=there, departed=self._departed_keys
            ):
                continue
            search = partial(mailbox.search_header, "Message-ID", message_id)
            if unless_refused(self._log, search) != []:  # refused: given up, like a locate
                continue  # in Junk, arrived after this sync's look: the next one reads it
            self._departed_keys.add(key)
            unseen.append((message_id, key))
        return unseen

    def _arrived(
        self, mailbox: Mailbox, junk: str, uidvalidity: int, uids: Sequence[int]
    ) -> list[tuple[int, str, str, str]]:
        read = self._fetch_read(mailbox, uids)
        keys = [r.content_hash for _, r in read]
        ours = self._state.moved_to_junk(self.account.name, keys)
        labels = self._state.labels(self.account.name, keys)
        items: list[tuple[int, str, str, str]] = []
        for message, reading in read:
            # Mail spamd moved here, unless the user rescued it since: then this drag
            # back is the user's, and their latest word (spam) replaces the rescue.
            origin = rescues.origin(reading.content_hash, ours, labels)
            self._log.info(
                "arrived_in_junk", uid=message.uid, message_id=reading.message_id, origin=origin
            )
            if origin == "user":
                self._learn("spam", "moved_to_junk", uidvalidity, message, reading, folder=junk)
            items.append((message.uid, reading.message_id, reading.content_hash, origin))
        return items

    def _departed(
        self, mailbox: Mailbox, junk: str, message_id: str, digest: str, origin: str
    ) -> None:
        """Mail left Junk: a rescue if the same mail is (or was just) seen elsewhere."""
        departure = identity.Sighting(digest, time.time())
        held = self._state.held(self.account.name, digest)
        rescue = rescues.rescued_copy(departure, held, self._rescue_window)
        if rescue is not None:  # a copy a watcher holds (a sync client uploads, then deletes)
            mailbox.examine(rescue.folder)
            same = self._fetch_read(mailbox, [rescue.uid])
            if same and same[0][1].content_hash == digest:
                self._learn("ham", "rescued", rescue.uidvalidity, *same[0], folder=rescue.folder)
                self._state.rescued(rescue)
                return
        found = (
            unless_refused(self._log, partial(mailbox.locate, message_id, skip={junk}))
            if message_id
            else None
        )
        if found is None:  # deleted, trashed or expired: no label
            self._log.info("left_junk", origin=origin, to=None)
            return
        folder, uid = found
        same = [(m, r) for m, r in self._fetch_read(mailbox, [uid]) if r.content_hash == digest]
        if not same:
            self._log.info("left_junk", origin=origin, to=folder, same_content=False)
            return
        self._learn("ham", "rescued", 0, *same[0], folder=folder)
