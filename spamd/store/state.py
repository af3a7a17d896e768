"""Durable state in SQLite (WAL): where each folder was read up to, and every decision.

Crash safety comes from the order of writes, driven by the watcher:

1. decisions for a batch of new UIDs are inserted together with the folder's
   new ``last_uid`` in one transaction: spam as ``pending``, the rest ``done``;
2. the server is changed (MOVE, or COPY + STORE + UID EXPUNGE; or a keyword);
3. the decisions are marked ``done``.

Which status may follow which is `decisions.TRANSITIONS`; `set_status` refuses
anything else.

A crash before 1 leaves nothing recorded: the batch is fetched again. A crash
between 1 and 3 leaves ``pending`` rows, which the next sync finishes: a UID
still in the folder is moved, a UID gone was moved already. No message is
classified twice, skipped, or moved twice. Rows are keyed by UIDVALIDITY, so a
UIDVALIDITY change never confuses old UIDs with new ones.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spamd.core.decisions import UNFINISHED, Status, check
from spamd.core.learning import BOOTSTRAP, Correction, Label, to_signed, to_unsigned
from spamd.errors import SpamdError
from spamd.store.accounts import AccountFiles

SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL,
    PRIMARY KEY (account, folder)
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    score REAL NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    model_version TEXT NOT NULL,
    at REAL NOT NULL,
    status TEXT NOT NULL,      -- decisions.Status: pending | copying | done | gone
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account, folder, uidvalidity, uid)
);
CREATE INDEX IF NOT EXISTS decisions_by_message ON decisions (account, message_id);
CREATE INDEX IF NOT EXISTS decisions_pending ON decisions (account, folder, status)
    WHERE status IN ('pending', 'copying');
CREATE INDEX IF NOT EXISTS decisions_by_content ON decisions (account, content_hash);
-- Labels users gave by moving mail (learning.Correction); the latest label of a
-- message wins. `raw` is zlib-compressed and capped: what retraining needs.
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    label TEXT NOT NULL,       -- spam | ham
    how TEXT NOT NULL,         -- moved_to_junk | rescued | keyword | bootstrap
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fingerprint INTEGER,
    sender TEXT NOT NULL,
    subject TEXT NOT NULL,
    at REAL NOT NULL,          -- when spamd observed the user's action
    raw BLOB NOT NULL,
    set_aside INTEGER NOT NULL DEFAULT 0,  -- by a rollback: not learnt until restored
    UNIQUE (account, content_hash)
);
CREATE INDEX IF NOT EXISTS corrections_by_sender ON corrections (account, sender);
-- What spamd knows to be in each account's Junk folder, to notice what leaves it.
CREATE TABLE IF NOT EXISTS junk_items (
    account TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    origin TEXT NOT NULL,      -- spamd | user
    PRIMARY KEY (account, uidvalidity, uid)
);
"""
FILE_NAME = "state.sqlite3"  # in state_dir
SCHEMA_VERSION = 3  # 2 added corrections and junk_items, 3 corrections.set_aside (upgrade in place)
MAX_EXAMPLES = 2000  # corrections kept per account (oldest dropped first)


class Configured(Protocol):
    """What the paths below need of a configuration (`config.Config` provides it)."""

    @property
    def state_dir(self) -> Path: ...


def state_path(config: Configured) -> Path:
    """The state database of a configuration."""
    return config.state_dir / FILE_NAME


def calibration_path(config: Configured, account: str) -> Path:
    """Where an account's calibration is kept (`accounts.AccountFiles`)."""
    return AccountFiles(config.state_dir, account).calibration


def _private(path: Path, mode: int) -> None:
    """Give a file or directory of the state this mode, whatever the umask: the
    corrections hold whole messages. One that belongs to another user is left as
    that user (an administrator) made it."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_uid == os.geteuid():
            path.chmod(mode)


class StateError(SpamdError):
    """The state database cannot be opened or is from an unknown version."""


@dataclass(frozen=True, slots=True)
class FolderMark:
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True)
class Decision:
    account: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    content_hash: str
    score: float
    action: str  # policy.Action
    reason: str
    model_version: str
    status: Status = Status.DONE
    at: float = 0.0


class State:
    """Thread-safe: watcher threads share one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private(path.parent, 0o700)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            _private(path, 0o600)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            for companion in ("-wal", "-shm"):  # SQLite gives new ones the database's mode
                _private(Path(f"{path}{companion}"), 0o600)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(f"{path}: state from a newer spamd (schema {version})")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(corrections)")}
            if "set_aside" not in columns:
                self._db.execute(
                    "ALTER TABLE corrections ADD COLUMN set_aside INTEGER NOT NULL DEFAULT 0"
                )
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the state database ({exc})") from None
        except OSError as exc:
            raise StateError(f"{path}: cannot open the state database ({exc.strerror})") from None
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def mark(self, account: str, folder: str) -> FolderMark | None:
        rows = self._query(
            "SELECT uidvalidity, last_uid FROM folders WHERE account=? AND folder=?",
            (account, folder),
        )
        return FolderMark(int(rows[0][0]), int(rows[0][1])) if rows else None  # type: ignore[call-overload]

    def set_mark(self, account: str, folder: str, mark: FolderMark) -> None:
        with self._transaction() as db:
            _upsert_mark(db, account, folder, mark)

    def record(
        self, decisions: Sequence[Decision], account: str, folder: str, mark: FolderMark | None
    ) -> None:
        """Step 1: decisions of a batch and the folder's new mark (if any), atomically."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO decisions (account, folder, uidvalidity, uid, message_id, "
                "content_hash, score, action, reason, model_version, at, status) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (d.account, d.folder, d.uidvalidity, d.uid, d.message_id, d.content_hash,
                     d.score, d.action, d.reason, d.model_version, d.at or now, d.status)
                    for d in decisions
                ],
            )  # fmt: skip
            if mark is not None:
                _upsert_mark(db, account, folder, mark)

    def set_status(
        self, decisions: Sequence[Decision], status: Status, *, attempt: bool = False
    ) -> None:
        """Change the status of recorded decisions, as `decisions.TRANSITIONS` allows:
        an illegal change raises `IllegalTransition` and changes nothing."""
        if not decisions:
            return
        with self._transaction() as db:
            for d in decisions:
                key = (d.account, d.folder, d.uidvalidity, d.uid)
                row = db.execute(
                    "SELECT status FROM decisions "
                    "WHERE account=? AND folder=? AND uidvalidity=? AND uid=?",
                    key,
                ).fetchone()
                if row is None:
                    raise StateError(
                        f"{d.account}/{d.folder}: no decision recorded for UID {d.uid}"
                    )
                check(str(row[0]), status, f"{d.account}/{d.folder} UID {d.uid}")
                db.execute(
                    "UPDATE decisions SET status=?, attempts=attempts+? "
                    "WHERE account=? AND folder=? AND uidvalidity=? AND uid=?",
                    (str(status), int(attempt), *key),
                )

    def unfinished(self, account: str, folder: str, uidvalidity: int) -> list[Decision]:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM decisions WHERE account=? AND folder=? AND uidvalidity=? "  # noqa: S608 - constant columns
            f"AND status IN ({','.join('?' * len(UNFINISHED))}) ORDER BY uid",
            (account, folder, uidvalidity, *sorted(UNFINISHED)),
        )
        return [_decision(row) for row in rows]

    def decided_uids(
        self, account: str, folder: str, uidvalidity: int, uids: Sequence[int]
    ) -> set[int]:
        if not uids:
            return set()
        return self._uids(
            "SELECT uid FROM decisions WHERE account=? AND folder=? AND uidvalidity=? "  # noqa: S608 - placeholders only
            f"AND uid BETWEEN ? AND ? AND uid IN ({','.join('?' * len(uids))})",
            (account, folder, uidvalidity, min(uids), max(uids), *uids),
        )

    def decided_message_ids(self, account: str, folder: str) -> set[str]:
        rows = self._query(
            "SELECT DISTINCT message_id FROM decisions "
            "WHERE account=? AND folder=? AND message_id!=''",
            (account, folder),
        )
        return {str(row[0]) for row in rows}

    def decisions(self, account: str | None = None, limit: int = 1000) -> list[Decision]:
        where, args = ("WHERE account=?", [account]) if account else ("", [])
        rows = self._query(
            f"SELECT {_COLUMNS} FROM decisions {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        )
        return [_decision(row) for row in rows]

    def moved_to_junk(self, account: str, content_hashes: Sequence[str]) -> set[str]:
        """Which of these messages spamd itself moved (or meant to move) to Junk."""
        return self._hashes_in(
            "SELECT content_hash FROM decisions WHERE account=? AND action='move' "
            "AND content_hash IN ({})",
            account,
            content_hashes,
        )

    def labels(self, account: str, content_hashes: Sequence[str]) -> dict[str, Label]:
        """What is known of these messages: the user's latest label (set-aside ones
        aside), else "spam" for mail spamd itself moved to Junk."""
        known: dict[str, Label] = dict.fromkeys(self.moved_to_junk(account, content_hashes), "spam")
        if content_hashes:
            rows = self._query(
                "SELECT content_hash, label FROM corrections WHERE account=? AND set_aside=0 "  # noqa: S608 - placeholders only
                f"AND content_hash IN ({','.join('?' * len(content_hashes))})",
                (account, *content_hashes),
            )
            known.update({str(h): str(label) for h, label in rows})  # type: ignore[misc]
        return known

    def in_junk(self, account: str, content_hashes: Sequence[str], since: float) -> set[str]:
        """Which of these messages Junk held at the Junk watcher's last look, or spamd
        decided to move there after `since` (the Junk watcher may not have seen it yet)."""
        return self._hashes_in(
            "SELECT content_hash FROM junk_items WHERE account=? AND content_hash IN ({})",
            account,
            content_hashes,
        ) | self._hashes_in(
            "SELECT content_hash FROM decisions WHERE account=? AND action='move' "  # noqa: S608 - a float
            f"AND at>{float(since)!r} AND content_hash IN ({{}})",
            account,
            content_hashes,
        )

    def recent_moves(self, account: str, since: float) -> list[tuple[str, str]]:
        """(message_id, content_hash) of mail spamd moved to Junk after `since`."""
        rows = self._query(
            "SELECT DISTINCT message_id, content_hash FROM decisions WHERE account=? "
            "AND action='move' AND status=? AND at>?",
            (account, str(Status.DONE), since),
        )
        return [(str(m), str(h)) for m, h in rows]

    def held(self, account: str, content_hash: str) -> list[Decision]:
        """Decisions waiting for a departure from Junk of this mail (`identity.arrival`)."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM decisions WHERE account=? AND content_hash=? AND status=?",  # noqa: S608 - constant columns
            (account, content_hash, str(Status.HELD)),
        )
        return [_decision(row) for row in rows]

    def held_in(self, account: str, folder: str, uidvalidity: int) -> list[Decision]:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM decisions WHERE account=? AND folder=? AND uidvalidity=? "  # noqa: S608 - constant columns
            "AND status=? ORDER BY uid",
            (account, folder, uidvalidity, str(Status.HELD)),
        )
        return [_decision(row) for row in rows]

    def rescued(self, d: Decision) -> None:
        """A held decision's message was rescued: keep it, for good."""
        with self._transaction() as db:
            db.execute(
                "UPDATE decisions SET status=?, action='keep', reason='rescued' "
                "WHERE account=? AND folder=? AND uidvalidity=? AND uid=? AND status=?",
                (str(Status.DONE), d.account, d.folder, d.uidvalidity, d.uid, str(Status.HELD)),
            )

    def _hashes_in(self, sql: str, account: str, content_hashes: Sequence[str]) -> set[str]:
        if not content_hashes:
            return set()
        rows = self._query(
            sql.format(",".join("?" * len(content_hashes))), (account, *content_hashes)
        )
        return {str(row[0]) for row in rows}

    def flagged_uids(self, account: str, folder: str, uidvalidity: int) -> set[int]:
        """UIDs that spamd itself gave the junk keyword (mode: flag)."""
        return self._uids(
            "SELECT uid FROM decisions WHERE account=? AND folder=? AND uidvalidity=? "
            "AND action='flag'",
            (account, folder, uidvalidity),
        )

    def corrected_uids(self, account: str, folder: str, uidvalidity: int) -> set[int]:
        return self._uids(
            "SELECT uid FROM corrections WHERE account=? AND folder=? AND uidvalidity=?",
            (account, folder, uidvalidity),
        )

    def _uids(self, sql: str, args: Sequence[object]) -> set[int]:
        return {int(row[0]) for row in self._query(sql, args)}  # type: ignore[call-overload]

    # -- corrections ------------------------------------------------------------

    def add_correction(self, c: Correction, max_examples: int = MAX_EXAMPLES) -> bool:
        """Store a label, replacing the message's earlier one (the user's latest
        action wins; a set-aside label given again is learnt again); False when
        the message already had this label, or when it is a bootstrap guess
        about a message the user labelled themselves.
        Past `max_examples`, bootstrap labels go first, then the oldest."""
        with self._transaction() as db:
            old = db.execute(
                "SELECT label, how, set_aside FROM corrections WHERE account=? AND content_hash=?",
                (c.account, c.content_hash),
            ).fetchone()
            if old and (
                (old[0] == c.label and not old[2]) or (c.how == BOOTSTRAP and old[1] != BOOTSTRAP)
            ):
                return False
            db.execute(
                "INSERT OR REPLACE INTO corrections (account, label, how, folder, uidvalidity, "
                "uid, message_id, content_hash, fingerprint, sender, subject, at, raw) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (c.account, c.label, c.how, c.folder, c.uidvalidity, c.uid, c.message_id[:500],
                 c.content_hash, None if c.fingerprint is None else to_signed(c.fingerprint),
                 c.sender[:320], c.subject[:300], c.at or time.time(), zlib.compress(c.raw)),
            )  # fmt: skip
            db.execute(
                "DELETE FROM corrections WHERE account=? AND id NOT IN "
                "(SELECT id FROM corrections WHERE account=? "
                "ORDER BY how!=? DESC, id DESC LIMIT ?)",
                (c.account, c.account, BOOTSTRAP, max_examples),
            )
        return True

    def corrections(
        self,
        account: str | None = None,
        limit: int = 100,
        *,
        with_raw: bool = False,
        learnt_only: bool = False,
    ) -> list[Correction]:
        """The newest corrections first; `learnt_only` leaves out those set aside."""
        where, args = ("WHERE account=?", [account]) if account else ("WHERE 1", [])
        if learnt_only:
            where += " AND set_aside=0"
        raw = "raw" if with_raw else "x''"
        rows = self._query(
            "SELECT account, label, how, folder, message_id, content_hash, fingerprint, "  # noqa: S608 - constant columns
            f"sender, subject, {raw}, uidvalidity, uid, at, id, set_aside FROM corrections "
            f"{where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [
            Correction(
                str(a), str(label), str(how), str(f), str(m), str(h),  # type: ignore[arg-type]
                None if fp is None else to_unsigned(int(fp)),  # type: ignore[call-overload]
                str(snd), str(subj), zlib.decompress(r) if r else b"",  # type: ignore[arg-type]
                int(v), int(u), float(at), int(i), bool(aside),  # type: ignore[call-overload, arg-type]
            )
            for a, label, how, f, m, h, fp, snd, subj, r, v, u, at, i, aside in rows
        ]  # fmt: skip

    def forget(self, correction_id: int) -> Correction:
        """Remove one correction; raises `StateError` naming the id when there is none."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT account, label, how, folder, subject FROM corrections WHERE id=?",
                (correction_id,),
            ).fetchone()
            if row is None:
                raise StateError(f"{self.path}: no correction with id {correction_id}")
            db.execute("DELETE FROM corrections WHERE id=?", (correction_id,))
        a, label, how, folder, subject = row
        return Correction(a, label, how, folder, "", "", None, "", subject, b"", id=correction_id)

    def set_aside(self, since: float) -> int:
        """Set aside the corrections observed after `since` (a rollback); how many."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE corrections SET set_aside=1 WHERE at>? AND set_aside=0", (since,)
            ).rowcount

    def restore(self, correction_id: int | None = None) -> int:
        """Learn set-aside corrections again: one, or all of them; how many."""
        where, args = ("AND id=?", (correction_id,)) if correction_id is not None else ("", ())
        with self._transaction() as db:
            return db.execute(
                f"UPDATE corrections SET set_aside=0 WHERE set_aside=1 {where}",  # noqa: S608 - constant
                args,
            ).rowcount

    def fingerprints(self, account: str) -> list[tuple[int, Label]]:
        rows = self._query(
            "SELECT fingerprint, label FROM corrections "
            "WHERE account=? AND fingerprint IS NOT NULL AND how!=? AND set_aside=0 ORDER BY id",
            (account, BOOTSTRAP),
        )
        return [(to_unsigned(int(fp)), str(label)) for fp, label in rows]  # type: ignore[call-overload, misc]

    def senders_junked(self, account: str, at_least: int) -> set[str]:
        """Addresses with at least this many user-junked messages and none rescued."""
        rows = self._query(
            "SELECT sender FROM corrections WHERE account=? AND sender!='' AND set_aside=0 "
            "GROUP BY sender "
            "HAVING SUM(label='spam' AND how!=?) >= ? AND SUM(label='ham') = 0",
            (account, BOOTSTRAP, at_least),
        )
        return {str(row[0]) for row in rows}

    # -- what is in Junk --------------------------------------------------------

    def junk_items(self, account: str, uidvalidity: int) -> dict[int, tuple[str, str, str]]:
        """uid -> (message_id, content_hash, origin) of what Junk held at the last look."""
        rows = self._query(
            "SELECT uid, message_id, content_hash, origin FROM junk_items "
            "WHERE account=? AND uidvalidity=?",
            (account, uidvalidity),
        )
        return {int(u): (str(m), str(h), str(o)) for u, m, h, o in rows}  # type: ignore[call-overload]

    def update_junk_items(
        self,
        account: str,
        uidvalidity: int,
        added: Sequence[tuple[int, str, str, str]],
        removed: Sequence[int],
        *,
        mark: FolderMark | None,
        folder: str,
    ) -> None:
        """Record arrivals (uid, message_id, content_hash, origin) and departures at once."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM junk_items WHERE account=? AND uidvalidity!=?", (account, uidvalidity)
            )
            db.executemany(
                "INSERT OR REPLACE INTO junk_items VALUES (?,?,?,?,?,?)",
                [(account, uidvalidity, *item) for item in added],
            )
            db.executemany(
                "DELETE FROM junk_items WHERE account=? AND uidvalidity=? AND uid=?",
                [(account, uidvalidity, uid) for uid in removed],
            )
            if mark is not None:
                _upsert_mark(db, account, folder, mark)

    def checkpoint(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


_COLUMNS = (
    "account, folder, uidvalidity, uid, message_id, content_hash, score, action, reason, "
    "model_version, status, at"
)


def _decision(row: tuple[object, ...]) -> Decision:
    a, f, v, u, m, h, s, act, r, mv, st, at = row
    return Decision(
        str(a), str(f), int(v), int(u), str(m), str(h), float(s), str(act), str(r), str(mv),  # type: ignore[call-overload, arg-type]
        Status(str(st)), float(at),  # type: ignore[arg-type]
    )  # fmt: skip


def _upsert_mark(db: sqlite3.Connection, account: str, folder: str, mark: FolderMark) -> None:
    db.execute(
        "INSERT INTO folders (account, folder, uidvalidity, last_uid) VALUES (?,?,?,?) "
        "ON CONFLICT (account, folder) DO UPDATE SET uidvalidity=excluded.uidvalidity, "
        "last_uid=MAX(CASE WHEN folders.uidvalidity=excluded.uidvalidity THEN folders.last_uid "
        "ELSE 0 END, excluded.last_uid)",
        (account, folder, mark.uidvalidity, mark.last_uid),
    )
