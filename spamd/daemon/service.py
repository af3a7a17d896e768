"""The composition root: builds watchers from the configuration, schedules jobs, handles signals.

Only this module wires adapters (IMAP connections, the state store, the model
file, APScheduler) to the pure core and the watchers.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from spamd.core import calibration, personal
from spamd.core import scorer as scorer_lib
from spamd.core.calibration import Calibration
from spamd.core.learning import Correction
from spamd.core.scorer import Scorer
from spamd.daemon.personal import AccountModel
from spamd.daemon.watcher import (
    FolderWatcher,
    JunkWatcher,
    Memory,
    Reading,
    Readings,
    read_all,
)
from spamd.errors import CalibrationError, SpamdError
from spamd.mail.imap import Connection
from spamd.mail.ports import Mailbox
from spamd.ops import config as config_lib
from spamd.ops import systemd
from spamd.ops.config import Account, Config
from spamd.ops.telemetry import Telemetry
from spamd.ops.web import WebServer
from spamd.store.accounts import AccountFiles, write_private
from spamd.store.state import State, calibration_path, state_path
from spamd.store.versions import ModelStore

RETRAIN_TIMEOUT = 900.0
MODEL_CHECK_INTERVAL = 5.0  # seconds: a promotion, rollback or replaced model file goes live
STOP_GRACE = 4.0  # seconds for watchers to leave IDLE and log out; systemd allows more
# Drift: an account calibrates again (in the background) when the live base model
# changed, after this many new messages, or this long after its last attempt.
DRIFT_MESSAGES = 500
DRIFT_SECONDS = 7 * 24 * 3600.0
REFUSED_MESSAGES = 50  # an account refused for too little mail tries again sooner
REFUSED_SECONDS = 24 * 3600.0
# Accounts reading their calibration samples at once: on a start with many accounts,
# the others wait (kinder to the server, and memory stays flat).
CALIBRATIONS_AT_ONCE = 2


class LiveModel:
    """The model in use; replaced atomically when its files change on disk, or
    when `resolve` names another file (a promotion or rollback, see `versions`)."""

    def __init__(
        self,
        path: Path | Callable[[], Path],
        log: Any,
        loader: Callable[[Path], Scorer] = scorer_lib.load,
    ) -> None:
        self._resolve = path if callable(path) else lambda: path
        first = self._resolve()
        self._loader = loader
        self._log = log
        self._stamp = self._files_stamp(first)
        self._current = loader(first)

    def __call__(self) -> Scorer:
        return self._current

    @staticmethod
    def _files_stamp(path: Path) -> tuple[object, ...]:
        stamps: list[object] = [path]
        for file in (scorer_lib.weights_path(path), scorer_lib.metadata_path(path)):
            try:
                st = file.stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((0, 0))
        return tuple(stamps)

    def check(self) -> bool:
        """Load the model again if its files changed; keep the old one if the new one is refused."""
        path = self._resolve()
        stamp = self._files_stamp(path)
        if stamp == self._stamp:
            return False
        try:
            fresh = self._loader(path)
        except SpamdError as exc:
            self._log.error("model_refused", error=str(exc), keeping=self._current.version)
            return False
        finally:
            self._stamp = stamp
        old, self._current = self._current, fresh
        self._log.info("model_swapped", old=old.version, new=fresh.version, path=str(path))
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
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.telemetry = telemetry or Telemetry()
        self._log = log
        self._connect = connect
        self.store = ModelStore(config.state_dir, config.model_path)
        self.model = model or LiveModel(self.store.live_path, log)
        self.state = State(state_path(config))
        self.stop_event = threading.Event()
        self.watchers: list[FolderWatcher] = []  # one per watched folder
        self.junk_watchers: list[JunkWatcher] = []  # one per account, when learning
        self._threads: list[threading.Thread] = []  # the watchers'
        self._workers: list[threading.Thread] = []  # calibrations running
        self._sampling = threading.BoundedSemaphore(CALIBRATIONS_AT_ONCE)
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.memories: dict[str, Memory] = {}  # one per account, by name
        self.personal: dict[str, AccountModel] = {}  # accounts that calibrate, by name
        # Retraining: when each correction not yet in a retrain was observed, and
        # whether a retrain loop runs (both behind the lock).
        self._retrain_lock = threading.Lock()
        self._unlearnt: list[float] = []
        self._retraining = False

    def start(self) -> None:
        calibrating: list[Account] = []
        for account in self.config.accounts:
            memory = Memory(account.name, self.state, self._log, on_learned=self._learned)
            model: Callable[[], Scorer] = self.model
            if account.calibrate:  # its own threshold and personal layer on the shared base
                files = AccountFiles(self.config.state_dir, account.name)
                model = own = AccountModel(files, self.model, self._log)
                own.load()
                memory.calibration = self._stored_calibration(account)
                self.personal[account.name] = own
                if not files.calibration.exists() or not own.current:
                    own.calibrate_wanted = True
                    calibrating.append(account)
                elif memory.calibration.ham:
                    own.state = "calibrated"
            self.memories[account.name] = memory
            common: dict[str, Any] = {
                "connect": self._connect,
                "model": model,
                "state": self.state,
                "log": self._log,
                "stop": self.stop_event,
                "memory": memory,
                "metrics": self.telemetry,
                "rescue_window": self.config.rescue_window,
            }
            if self.config.learning:
                self.junk_watchers.append(JunkWatcher(account, **common))
            for folder in account.folders:
                self.watchers.append(FolderWatcher(account, folder, **common))
        for watcher in self._all_watchers():
            self.scheduler.add_job(
                _poll,
                "interval",
                args=[watcher],
                seconds=watcher.account.poll_interval,
                id=f"poll:{watcher.account.name}:{_name(watcher)}",
                coalesce=True,
                max_instances=1,
            )
        self.scheduler.add_job(
            self.check_model,
            "interval",
            seconds=MODEL_CHECK_INTERVAL,
            id="model_check",
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
        for watcher in self._all_watchers():
            thread = threading.Thread(
                target=watcher.run,
                name=f"{watcher.account.name}/{_name(watcher)}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        for account in calibrating:
            self._in_background(account)
        self._log.info(
            "started",
            accounts=len(self.config.accounts),
            folders=len(self.watchers),
            model=self.model().version,
        )

    def housekeeping(self) -> None:
        """Retry unfinished moves, keep the WAL small. (A replaced model file is
        picked up by the `model_check` job.)"""
        for watcher in self._all_watchers():
            watcher.wake.set()
        self.state.checkpoint()
        for account in self.config.accounts:
            why = self.drifted(account)
            if why:
                self._log.info("recalibrating", account=account.name, reason=why)
                self.personal[account.name].calibrate_wanted = True
                self._in_background(account)

    def drifted(self, account: Account) -> str:
        """Why an account should calibrate again, or "" (see `DRIFT_MESSAGES`)."""
        own = self.personal.get(account.name)
        if own is None or own.busy:
            return ""
        if own.layer.examples and not own.current:
            return "the live base model changed"
        refused = not own.state.startswith("calibrated")
        new = self._handled(account.name) - own.handled_at_attempt
        if new >= (REFUSED_MESSAGES if refused else DRIFT_MESSAGES):
            return f"{new} new messages since the last calibration"
        if time.time() - own.last_attempt >= (REFUSED_SECONDS if refused else DRIFT_SECONDS):
            return "time since the last calibration"
        return ""

    def _handled(self, account: str) -> int:
        return sum(w.health.handled for w in self.watchers if w.account.name == account)

    def stop(self, grace: float = STOP_GRACE) -> None:
        self.stop_event.set()
        for watcher in self._all_watchers():
            watcher.wake.set()
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + grace
        for thread in [*self._threads, *self._workers]:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in [*self._threads, *self._workers] if t.is_alive()]
        if stuck:  # e.g. connecting to a server that does not answer; state is safe anyway
            self._log.warning("stop_timeout", still_running=stuck)
        else:
            self.state.close()
        self._log.info("stopped_all")

    def _stored_calibration(self, account: Account) -> Calibration:
        """The account's calibration from an earlier start, else cautious around the model's."""
        path = calibration_path(self.config, account.name)
        try:
            stored = calibration.from_json(path.read_text(), str(path))
        except FileNotFoundError:
            stored = calibration.uncalibrated(self.model().threshold)
            self._calibrated(account, stored)
            return stored
        except (OSError, SpamdError) as exc:
            self._log.warning("calibration_unreadable", account=account.name, error=str(exc))
            stored = calibration.uncalibrated(self.model().threshold)
            self._calibrated(account, stored)
            return stored
        self._log.info("calibrated", account=account.name, stored=True, **_fields(stored))
        self._calibrated(account, stored)
        return stored

    def _calibrated(self, account: Account, cal: Calibration) -> None:
        self.telemetry.calibrated(account.name, cal.threshold, cal.move_at, cal.ham, cal.spam)

    def _in_background(self, account: Account) -> None:
        """Calibrate in a thread of its own, which ends when done (not a watcher:
        `dead` does not count it)."""
        thread = threading.Thread(
            target=self._work, args=(account.name,), name=f"{account.name}/personal", daemon=True
        )
        self._workers = [t for t in self._workers if t.is_alive()]
        self._workers.append(thread)
        thread.start()

    def _work(self, name: str) -> None:
        """Thread or job: an account's calibration and layer refits, one at a time; a
        correction observed meanwhile is in the next fit, which starts at once."""
        own = self.personal[name]
        account = next(a for a in self.config.accounts if a.name == name)
        with own.lock:
            if own.busy:
                return
            own.busy = True
        try:
            while not self.stop_event.is_set():
                with own.lock:
                    wanted, own.calibrate_wanted = own.calibrate_wanted, False
                    observed, own.unlearnt = own.unlearnt, []
                if wanted:
                    self._calibrate(account, self.memories[name], own)
                elif observed:
                    self._fit_layer(account, own, observed)
                with own.lock:
                    if not (own.calibrate_wanted or own.unlearnt):
                        return
        finally:
            with own.lock:
                own.busy = False

    def _calibrate(self, account: Account, memory: Memory, own: AccountModel) -> None:
        """Read a sample of the account's newest kept mail and Junk (`bootstrap.sample`),
        then fit its layer and set its threshold on out-of-fold scores of that sample
        (`training.layers`); on too little mail the account stays cautious."""
        own.state = "waiting to calibrate"
        with self._sampling:
            if self.stop_event.is_set():
                return
            own.attempted(self._handled(account.name))
            own.state = "calibrating"
            self._sample_and_fit(account, memory, own)

    def _sample_and_fit(self, account: Account, memory: Memory, own: AccountModel) -> None:
        from spamd.daemon import bootstrap  # noqa: PLC0415 - reading samples: only when calibrating

        base = self.model()
        kept = junked = 0
        try:
            mailbox = self._connect(account)
            try:
                designs, labels = bootstrap.sample(mailbox, account, base)
            finally:
                mailbox.logout()
            kept, junked = labels.count(0), labels.count(1)
            calibration.check_sample(kept, junked)
        except CalibrationError as exc:  # too little mail: stay cautious, say what is missing
            own.state = f"refused: {exc}"[:300]
            self._log.warning(
                "calibration_refused", account=account.name, error=str(exc)[:300],
                kept=kept, junked=junked, **_fields(memory.calibration),
            )  # fmt: skip
            return
        except SpamdError as exc:  # the server failed: stay as it was, try again on drift
            own.state = f"failed: {exc}"[:300]
            self._log.warning("calibration_failed", account=account.name, error=str(exc)[:300])
            return
        write_private(own.files.sample, personal.designs_to_bytes(designs, labels, base.version))
        outcome = self._layer_process(account, calibrate=True)
        if outcome is None or "error" in outcome or not outcome.get("promoted"):
            why = "failed" if outcome is None else outcome.get("error") or outcome.get("refused")
            own.state = f"failed: {why}"[:300]
            self._log.warning("calibration_failed", account=account.name, error=str(why)[:300])
            return
        try:
            found = calibration.from_json(own.files.calibration.read_text(), account.name)
        except (OSError, SpamdError) as exc:
            own.state = f"failed: {exc}"[:300]
            self._log.error("calibration_failed", account=account.name, error=str(exc)[:300])
            return
        own.load()
        memory.calibration = found
        own.state = "calibrated"
        self._calibrated(account, found)
        self._log.info(
            "calibrated", account=account.name, stored=False, **_fields(found),
            layer_offsets=outcome["offsets"], layer_bytes=outcome["layer_bytes"],
            seconds=outcome["seconds"],
        )  # fmt: skip

    def _fit_layer(self, account: Account, own: AccountModel, observed: list[float]) -> None:
        """Refit the account's layer after its corrections; live at once if the guard passed."""
        self._log.info("layer_fitting", account=account.name, corrections_new=len(observed))
        outcome = self._layer_process(account, calibrate=False)
        if outcome is None:
            return
        if "error" in outcome:
            self.telemetry.retrained("failed")
            self._log.error("layer_fit_failed", account=account.name, error=outcome["error"])
            return
        if not outcome.get("promoted"):
            self.telemetry.retrained("refused")
            self._log.warning("layer_refused", **outcome)
            return
        own.load()
        self.telemetry.retrained("promoted")
        self._log.info("layer_fitted", **outcome)
        waited = [time.time() - at for at in observed]
        self._log.info(
            "correction_to_live",
            account=account.name,
            seconds=round(max(waited), 2),
            newest_seconds=round(min(waited), 2),
            corrections=len(observed),
        )

    def _layer_process(self, account: Account, *, calibrate: bool) -> dict[str, Any] | None:
        extra = ["--account", account.name, *(["--calibrate"] if calibrate else [])]
        return self._child("spamd.training.layers", extra)

    def _child(self, module: str, extra: Sequence[str]) -> dict[str, Any] | None:
        """Run a fitting module in a child process; its JSON outcome, or None (logged)."""
        # Isolated (-I): neither the working directory nor PYTHON* variables can put
        # other code on its path; it runs in the state directory, which is spamd's own.
        command = [
            sys.executable, "-I", "-m", module,
            "--state-dir", str(self.config.state_dir), "--base", str(self.config.model_path),
            *extra,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=RETRAIN_TIMEOUT,
                check=False,
                cwd=self.config.state_dir,
            )
            outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, OSError, ValueError, IndexError) as exc:
            self.telemetry.retrained("failed")
            self._log.error("retrain_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return None
        return outcome

    def check_model(self) -> None:
        """Swap to a new live model (a promotion, or the admin's rollback); then what
        the watchers remember is read again, since a rollback sets corrections aside
        and `spamd corrections forget` removes them."""
        if self.model.check():
            for memory in self.memories.values():
                memory.reload()
            for account in self.config.accounts:  # their layers belong to the old base
                own = self.personal.get(account.name)
                if own is not None and own.layer.examples and not own.current:
                    self._log.info(
                        "recalibrating", account=account.name, reason="the live base model changed"
                    )
                    own.calibrate_wanted = True
                    self._in_background(account)

    def _learned(self, correction: Correction) -> None:
        """A user corrected spamd: retrain once corrections stop coming for a moment.

        A correction observed while a retrain runs is in the next one, which the
        running loop starts as soon as the current one ends (APScheduler skips a
        job whose previous run has not finished, so the job cannot be relied on)."""
        self.telemetry.correction(correction.account, correction.label)
        if not self.config.learning:
            return
        own = self.personal.get(correction.account)
        if own is not None:  # only the account's own layer learns from it
            with own.lock:
                own.unlearnt.append(correction.at or time.time())
            self.scheduler.add_job(
                self._work,
                "date",
                run_date=datetime.now(UTC) + timedelta(seconds=self.config.retrain_delay),
                args=[correction.account],
                id=f"layer:{correction.account}",
                replace_existing=True,
            )
            return
        with self._retrain_lock:
            self._unlearnt.append(correction.at or time.time())
            if self._retraining:
                return
        when = datetime.now(UTC) + timedelta(seconds=self.config.retrain_delay)
        self.scheduler.add_job(
            self.retrain, "date", run_date=when, id="retrain", replace_existing=True
        )

    def retrain(self) -> None:
        """Train and guard a candidate in a child process (scikit-learn stays out of
        the daemon); swap to it at once if it was promoted. Runs again while
        corrections came in meanwhile; none is left out."""
        with self._retrain_lock:
            if self._retraining:
                return
            self._retraining = True
            observed, self._unlearnt = self._unlearnt, []
        while True:
            self._retrain_once(observed)
            with self._retrain_lock:
                observed, self._unlearnt = self._unlearnt, []
                if not observed or self.stop_event.is_set():
                    self._retraining = False
                    return

    def _retrain_once(self, observed: list[float]) -> None:
        """One retrain; `observed`: when the corrections new to it were observed."""
        # Only the corrections of accounts without a personal layer: the others are
        # learnt by their own layers and must not move anybody else's scores.
        shared = [a.name for a in self.config.accounts if a.name not in self.personal]
        self._log.info("retraining", corrections_new=len(observed))
        outcome = self._child(
            "spamd.training.retrain", [arg for name in shared for arg in ("--account", name)]
        )
        if outcome is None:
            return
        if "error" in outcome:
            self.telemetry.retrained("failed")
            self._log.error("retrain_failed", error=outcome["error"])
            return
        self.telemetry.retrained("promoted" if outcome.get("promoted") else "refused")
        self._log.info("retrained", **outcome)
        if outcome.get("promoted"):
            self.check_model()
            if observed:  # from when spamd saw the user's action, not from the retrain's start
                waited = [time.time() - at for at in observed]
                self._log.info(
                    "correction_to_live",
                    seconds=round(max(waited), 2),
                    newest_seconds=round(min(waited), 2),
                    corrections=len(observed),
                )

    def dead(self) -> list[str]:
        """Watcher threads that ended while they should run (a bug the watcher could not catch)."""
        if self.stop_event.is_set():
            return []
        return [thread.name for thread in self._threads if not thread.is_alive()]

    def all_started(self) -> bool:
        """Every watcher has connected or failed at least once."""
        return all(w.health.connected or w.health.failures for w in self._all_watchers())

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(every folder of every account connected, per-account details): for /healthz."""
        accounts: dict[str, dict[str, Any]] = {}
        for w in self._all_watchers():
            entry = accounts.setdefault(
                w.account.name,
                {"connected": True, "last_sync": None, "junk_folder": "", "folders": {}},
            )
            h = w.health
            entry["connected"] = entry["connected"] and h.connected
            entry["junk_folder"] = entry["junk_folder"] or h.junk_folder
            synced = h.last_sync or None
            if synced is not None and (entry["last_sync"] is None or synced < entry["last_sync"]):
                entry["last_sync"] = synced  # the stalest folder's
            entry["folders"][_name(w)] = {
                "connected": h.connected,
                "idle": h.idle,
                "last_sync": synced,
                "failures": h.failures,
                "last_error": h.last_error[:300],
                "setup_error": h.setup_error[:300],
            }
            if h.setup_error:  # not network trouble: the account's settings need a fix
                entry["setup_error"] = h.setup_error[:300]
        healthy = all(a["connected"] for a in accounts.values())
        for name, memory in self.memories.items():
            if name in accounts and memory.calibration is not None:
                accounts[name]["calibration"] = _fields(memory.calibration)
            if name in accounts and name in self.personal:
                accounts[name]["personal"] = self.personal[name].fields()
        return healthy, {"accounts": accounts, "model_version": self.model().version}

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        _, details = self.health()
        accounts = details["accounts"]
        up = sum(a["connected"] for a in accounts.values())
        handled = sum(w.health.handled for w in self.watchers)
        setup = [
            f"{name}: {a['setup_error']}" for name, a in accounts.items() if "setup_error" in a
        ]
        return (
            f"{up}/{len(accounts)} accounts connected, {handled} messages handled, "
            f"model {details['model_version']}"
        ) + "".join(f"; SETUP ERROR {line}" for line in setup)

    def _all_watchers(self) -> list[FolderWatcher]:
        return [*self.watchers, *self.junk_watchers]


def _fields(cal: Calibration | None) -> dict[str, Any]:
    """A calibration as log fields (and /healthz): rounded, with whether it is cautious."""
    if cal is None:
        return {}
    return {
        "threshold": round(cal.threshold, 4),
        "move_at": round(cal.move_at, 4),
        "ham": cal.ham,
        "spam": cal.spam,
        "fpr_bound": round(cal.fpr_bound, 5),
        "spam_caught": round(cal.spam_caught, 4) if cal.spam_caught == cal.spam_caught else None,
        "cautious": cal.cautious,
    }


def _name(watcher: FolderWatcher) -> str:
    return watcher.folder or "junk"  # a JunkWatcher knows its folder once connected


def _poll(watcher: FolderWatcher) -> None:
    if not watcher.health.idle:
        watcher.wake.set()


STATUS_INTERVAL = 10.0  # seconds between STATUS= updates to systemd


def run(
    config: Config, *, log: Any, default_model: Path, telemetry: Telemetry | None = None
) -> int:
    """The main job: run until SIGTERM/SIGINT; SIGHUP reloads the configuration.

    Under systemd (``Type=notify``) it sends READY=1 once every account has
    connected or failed clearly, a STATUS= line every few seconds and, when the
    unit sets WatchdogSec=, WATCHDOG=1 from this loop while every watcher thread
    is alive (so systemd restarts a spamd whose watcher died).
    """
    wakeup = threading.Event()
    requests: list[str] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        requests.append("reload" if signum == signal.SIGHUP else "stop")
        wakeup.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    telemetry = telemetry or Telemetry()
    service, web = _start(config, telemetry, log)
    watchdog = systemd.watchdog_interval()
    tick = min(watchdog or 1.0, 1.0)
    ready, last_status, dead = False, 0.0, False
    while True:
        wakeup.wait(tick)
        wakeup.clear()
        while requests:
            request = requests.pop(0)
            if request == "stop":
                log.info("stopping", reason="signal")
                systemd.notify("STOPPING=1")
                _stop(service, web)
                return 0
            try:
                fresh = config_lib.load(config.source, default_model)
                config_lib.check_state_dir(fresh)
            except SpamdError as exc:
                log.error("reload_refused", error=str(exc))
                continue
            log.info("reloading", source=str(config.source))
            systemd.notify("RELOADING=1")
            _stop(service, web)
            config = fresh
            service, web = _start(fresh, telemetry, log)
            ready = False
        if not ready and service.all_started():
            ready = True
            systemd.notify("READY=1", f"STATUS={service.summary()}")
            log.info("ready", status=service.summary())
        if time.monotonic() - last_status >= STATUS_INTERVAL:
            last_status = time.monotonic()
            systemd.notify(f"STATUS={service.summary()}")
        died = service.dead()
        if died and not dead:
            log.error("watcher_died", threads=died)
        dead = bool(died)
        if watchdog and not dead:
            systemd.notify("WATCHDOG=1")


def _start(config: Config, telemetry: Telemetry, log: Any) -> tuple[Service, WebServer | None]:
    """A service and its HTTP listener, started. The listener binds first: a port
    in use is an error before any mail moves."""
    service = Service(config, log=log, telemetry=telemetry)
    telemetry.watch(service.health)
    web = None
    if config.http is not None:
        web = WebServer(
            config.http, telemetry=telemetry, model=service.model, health=service.health, log=log
        )
        web.start()
    service.start()
    return service, web


def _stop(service: Service, web: WebServer | None) -> None:
    if web:
        web.stop()
    service.stop()


class PoolReader:
    """Reads messages in worker processes (one per CPU): how `spamd scan` uses every core.

    The workers are forked at once, inheriting the loaded model, so they start
    without importing or loading anything. Make the reader before any thread,
    connection or database is opened: a forked child gets none of those intact.
    The daemon does not use this (one message at a time gains nothing from it,
    and every worker costs memory).
    """

    def __init__(self, scorer: Scorer, workers: int) -> None:
        self._workers = workers
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_use_in_worker,
            initargs=(scorer,),
        )
        self._pool.submit(int).result()  # forks every worker now (the fork start method does)

    def __call__(
        self, scorer: Scorer, raws: Sequence[bytes], max_bytes: int, fingerprint: bool = True
    ) -> Readings:
        chunk = max(1, len(raws) // (4 * self._workers))
        futures = [
            self._pool.submit(_read_in_worker, raws[i : i + chunk], max_bytes, fingerprint)
            for i in range(0, len(raws), chunk)
        ]
        return lambda: [reading for future in futures for reading in future.result()]

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


_worker_scorer: Scorer  # set by the initializer


def _use_in_worker(scorer: Scorer) -> None:
    global _worker_scorer  # noqa: PLW0603 - one model per worker process
    _worker_scorer = scorer


def _read_in_worker(raws: Sequence[bytes], max_bytes: int, fingerprint: bool) -> list[Reading]:
    return read_all(_worker_scorer, raws, max_bytes, fingerprint)()


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
    live = ModelStore(config.state_dir, config.model_path).live_path()
    model = LiveModel(live, log)
    day = (datetime.now(UTC) - timedelta(days=since_days)).date() if since_days else None
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as opened:
        reader = None
        if workers > 1:  # first: it forks
            reader = opened.enter_context(contextlib.closing(PoolReader(model(), workers)))
        state = opened.enter_context(contextlib.closing(State(state_path(config))))
        mailbox = connect(account)
        opened.callback(mailbox.logout)
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
            junk = watcher.prepare(mailbox)
            status = mailbox.select(watcher.folder)
            watcher.finish_unfinished(mailbox, junk, status.uidvalidity)  # of a scan cut short
            uids = mailbox.uids_since(day)
            total(len(uids))
            watcher.handle(
                mailbox, junk, status.uidvalidity, uids, advance=False, progress=progress
            )
            for action, n in watcher.health.counts.items():
                counts[action] = counts.get(action, 0) + n
    return counts
