"""The composition root: builds watchers from the configuration, schedules jobs, handles signals.

Only this module wires adapters (IMAP connections, the state store, the model
file, APScheduler) to the pure core and the watchers.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from spamd import config as config_lib
from spamd import scorer as scorer_lib
from spamd.config import Account, Config
from spamd.errors import SpamdError
from spamd.imap import Connection
from spamd.scorer import Scorer
from spamd.state import State
from spamd.watcher import FolderWatcher, Mailbox, Reading, read, read_all

STOP_GRACE = 4.0  # seconds for watchers to leave IDLE and log out; systemd allows more


def state_path(config: Config) -> Path:
    return config.state_dir / "state.sqlite3"


class LiveModel:
    """The model in use; replaced atomically when its files change on disk."""

    def __init__(
        self, path: Path, log: Any, loader: Callable[[Path], Scorer] = scorer_lib.load
    ) -> None:
        self.path = path
        self._loader = loader
        self._log = log
        self._stamp = self._files_stamp()
        self._current = loader(path)

    def __call__(self) -> Scorer:
        return self._current

    def _files_stamp(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for file in (scorer_lib.weights_path(self.path), scorer_lib.metadata_path(self.path)):
            try:
                st = file.stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((0, 0))
        return tuple(stamps)

    def check(self) -> bool:
        """Load the model again if its files changed; keep the old one if the new one is refused."""
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return False
        try:
            fresh = self._loader(self.path)
        except SpamdError as exc:
            self._log.error("model_refused", error=str(exc), keeping=self._current.version)
            return False
        finally:
            self._stamp = stamp
        old, self._current = self._current, fresh
        self._log.info("model_swapped", old=old.version, new=fresh.version)
        return True


class Service:
    """All watchers of one configuration, plus the scheduler of periodic jobs."""

    def __init__(
        self,
        config: Config,
        *,
        log: Any,
        connect: Callable[[Account], Mailbox] = Connection.open,
        model: LiveModel | None = None,
    ) -> None:
        self.config = config
        self._log = log
        self._connect = connect
        self.model = model or LiveModel(config.model_path, log)
        self.state = State(state_path(config))
        self.stop_event = threading.Event()
        self.watchers: list[FolderWatcher] = []
        self._threads: list[threading.Thread] = []
        self.scheduler = BackgroundScheduler(timezone=UTC)

    def start(self) -> None:
        for account in self.config.accounts:
            for folder in account.folders:
                watcher = FolderWatcher(
                    account,
                    folder,
                    connect=self._connect,
                    model=self.model,
                    state=self.state,
                    log=self._log,
                    stop=self.stop_event,
                )
                self.watchers.append(watcher)
                self.scheduler.add_job(
                    _poll,
                    "interval",
                    args=[watcher],
                    seconds=account.poll_interval,
                    id=f"poll:{account.name}:{folder}",
                    coalesce=True,
                    max_instances=1,
                )
        self.scheduler.add_job(
            self.housekeeping,
            "interval",
            seconds=self.config.housekeeping_interval,
            id="housekeeping",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()
        for watcher in self.watchers:
            thread = threading.Thread(
                target=watcher.run, name=f"{watcher.account.name}/{watcher.folder}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._log.info(
            "started",
            accounts=len(self.config.accounts),
            folders=len(self.watchers),
            model=self.model().version,
        )

    def housekeeping(self) -> None:
        """Pick up a replaced model file, retry unfinished moves, keep the WAL small."""
        self.model.check()
        for watcher in self.watchers:
            watcher.wake.set()
        self.state.checkpoint()

    def stop(self, grace: float = STOP_GRACE) -> None:
        self.stop_event.set()
        for watcher in self.watchers:
            watcher.wake.set()
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:  # e.g. connecting to a server that does not answer; state is safe anyway
            self._log.warning("stop_timeout", still_running=stuck)
        else:
            self.state.close()
        self._log.info("stopped_all")

    def all_started(self) -> bool:
        """Every watcher has connected or failed at least once."""
        return all(w.health.connected or w.health.failures for w in self.watchers)


def _poll(watcher: FolderWatcher) -> None:
    if not watcher.health.idle:
        watcher.wake.set()


def run(config: Config, *, log: Any, default_model: Path) -> int:
    """The main job: run until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
    wakeup = threading.Event()
    requests: list[str] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        requests.append("reload" if signum == signal.SIGHUP else "stop")
        wakeup.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    service = Service(config, log=log)
    service.start()
    while True:
        wakeup.wait()
        wakeup.clear()
        while requests:
            request = requests.pop(0)
            if request == "stop":
                log.info("stopping", reason="signal")
                service.stop()
                return 0
            try:
                fresh = config_lib.load(config.source, default_model)
            except SpamdError as exc:
                log.error("reload_refused", error=str(exc))
                continue
            log.info("reloading", source=str(config.source))
            service.stop()
            service = Service(fresh, log=log)
            service.start()


class PoolReader:
    """Reads messages in worker processes (one per CPU): how `spamd scan` uses every core.

    Each worker loads the model file itself; the daemon does not use this (one
    message at a time gains nothing from it, and every worker costs memory).
    """

    def __init__(self, model_path: Path, workers: int) -> None:
        self._workers = workers
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_load_worker_model,
            initargs=(model_path,),
        )

    def __call__(self, scorer: Scorer, raws: Sequence[bytes], max_bytes: int) -> list[Reading]:
        chunk = max(1, len(raws) // (4 * self._workers))
        return list(self._pool.map(_read_in_worker, raws, repeat(max_bytes), chunksize=chunk))

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


_worker_scorer: Scorer | None = None


def _load_worker_model(path: Path) -> None:
    global _worker_scorer  # noqa: PLW0603 - one model per worker process
    _worker_scorer = scorer_lib.load(path)


def _read_in_worker(raw: bytes, max_bytes: int) -> Reading:
    if _worker_scorer is None:  # the initializer failed; that worker's pool is broken anyway
        return Reading(error="no model")
    return read(raw, _worker_scorer, max_bytes)


def scan(
    config: Config,
    account: Account,
    folders: list[str],
    since_days: int | None,
    *,
    log: Any,
    progress: Callable[[int], None],
    total: Callable[[int], None],
    connect: Callable[[Account], Mailbox] = Connection.open,
    workers: int = 1,
) -> dict[str, int]:
    """Classify the existing mail of some folders now (`spamd scan`); returns action -> count."""
    state = State(state_path(config))
    model = LiveModel(config.model_path, log)
    reader = PoolReader(config.model_path, workers) if workers > 1 else None
    day = (datetime.now(UTC) - timedelta(days=since_days)).date() if since_days else None
    mailbox = connect(account)
    counts: dict[str, int] = {}
    try:
        junk = mailbox.find_junk()
        for folder in folders:
            watcher = FolderWatcher(
                account,
                folder,
                connect=connect,
                model=model,
                state=state,
                log=log,
                stop=threading.Event(),
                read=reader or read_all,
            )
            status = mailbox.select(folder)
            uids = mailbox.uids_since(day)
            total(len(uids))
            watcher.handle(
                mailbox, junk, status.uidvalidity, uids, advance=False, progress=progress
            )
            for action, n in watcher.health.counts.items():
                counts[action] = counts.get(action, 0) + n
    finally:
        mailbox.logout()
        state.close()
        if reader:
            reader.close()
    return counts
