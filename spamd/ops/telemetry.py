"""Prometheus metrics, counted where the work happens.

The watchers and the service call a `Telemetry` (through the small `watcher.Metrics`
protocol) when they classify, move, learn, connect or retrain, so no figure
depends on the log level or on a log field's name. Only `spamd_errors_total`
counts log events (warnings and errors by event name); those are never
filtered out before it sees them (see `log.configure`).

Per-account `spamd_connected` and `spamd_last_sync_timestamp_seconds`, and
`spamd_model_info`, are read from the running service's health at scrape time;
`process_*` series come from the process collector. No `_created` series.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

# Reading one message (parse, features, score) takes milliseconds; 0.5 ms to 1 s.
CLASSIFICATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
COUNTED_LEVELS = frozenset({"warning", "error", "exception", "critical"})

Health = Callable[[], tuple[bool, dict[str, Any]]]  # `Service.health`


class Telemetry:
    def __init__(self) -> None:
        # A `_created` series per counter doubles what Prometheus stores for nothing.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessMetrics(registry=r)
        PlatformCollector(registry=r)
        self.messages = Counter(
            "spamd_messages", "Messages classified", ["account", "verdict", "reason"], registry=r
        )
        self.moves = Counter("spamd_moves", "Messages moved to Junk", ["account"], registry=r)
        self.move_failures = Counter(
            "spamd_move_failures",
            "Messages whose move the server refused or that failed",
            ["account"],
            registry=r,
        )
        self.corrections = Counter(
            "spamd_corrections",
            "Labels users gave by moving mail",
            ["account", "label"],
            registry=r,
        )
        self.retrains = Counter(
            "spamd_retrains", "Retrains by outcome", ["outcome"], registry=r
        )  # promoted | refused | failed
        self.reconnects = Counter(
            "spamd_reconnects", "Connections made again after the first", ["account"], registry=r
        )
        self.errors = Counter("spamd_errors", "Errors and warnings by event", ["kind"], registry=r)
        self.classification = Histogram(
            "spamd_classification_seconds",
            "Time to read one message: parse, extract features and score",
            buckets=CLASSIFICATION_BUCKETS,
            registry=r,
        )
        self.threshold = Gauge(
            "spamd_account_threshold", "Score at or above which mail is junked", ["account"],
            registry=r,
        )  # fmt: skip
        self.move_at = Gauge(
            "spamd_account_move_at", "Score at or above which junked mail is moved (cautious: "
            "higher than the threshold)", ["account"], registry=r,
        )  # fmt: skip
        self.calibration_sample = Gauge(
            "spamd_account_calibration_messages", "Own messages the threshold was set on",
            ["account", "label"], registry=r,
        )  # fmt: skip
        self.up_since = Gauge("spamd_start_time_seconds", "When spamd started", registry=r)
        self.up_since.set(time.time())
        self._accounts = _Accounts()
        r.register(self._accounts)
        self._lock = threading.Lock()
        self._day = ""
        self._today: dict[str, int] = {}  # "decisions" / "junked" / "corrections" since 00:00 UTC

    # -- what the service tells ------------------------------------------------------

    def watch(self, health: Health) -> None:
        """Read the per-account gauges from this service's health from now on."""
        self._accounts.health = health

    def retrained(self, outcome: str) -> None:
        self.retrains.labels(outcome).inc()

    def correction(self, account: str, label: str) -> None:
        self.corrections.labels(account, label).inc()
        self._count_today("corrections")

    # -- what a watcher tells (`watcher.Metrics`) ------------------------------------

    def message(self, account: str, action: str, reason: str) -> None:
        verdict = "spam" if action in ("move", "flag", "log", "move_failed") else "ham"
        self.messages.labels(account, verdict, reason).inc()
        self._count_today("decisions")
        if verdict == "spam":
            self._count_today("junked")

    def classified(self, seconds: float) -> None:
        self.classification.observe(seconds)

    def moved(self, account: str, messages: int) -> None:
        if messages:
            self.moves.labels(account).inc(messages)

    def move_failed(self, account: str, messages: int) -> None:
        self.move_failures.labels(account).inc(messages)

    def connected(self, account: str, *, again: bool) -> None:
        if again:
            self.reconnects.labels(account).inc()

    # -- the rest --------------------------------------------------------------------

    def calibrated(
        self, account: str, threshold: float, move_at: float, ham: int, spam: int
    ) -> None:
        """An account's threshold, where moving starts, and the own mail it was set on."""
        self.threshold.labels(account).set(threshold)
        self.move_at.labels(account).set(move_at)
        self.calibration_sample.labels(account, "ham").set(ham)
        self.calibration_sample.labels(account, "spam").set(spam)

    def today_counts(self) -> dict[str, int]:
        with self._lock:
            today = time.strftime("%Y-%m-%d", time.gmtime())
            return dict(self._today) if self._day == today else {}

    def processor(
        self, _: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Count warnings and errors by event name (a structlog processor)."""
        if method in COUNTED_LEVELS:
            self.errors.labels(str(event.get("event", ""))).inc()
        return event

    def _count_today(self, what: str) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        with self._lock:
            if day != self._day:
                self._day, self._today = day, {}
            self._today[what] = self._today.get(what, 0) + 1


class ProcessMetrics(ProcessCollector):
    """The `process_*` series, also where /proc shows only processes (the units'
    `ProcSubset=pid`): without /proc/stat the boot time comes from CLOCK_BOOTTIME,
    the clock /proc/PID/stat's start time counts in."""

    def _boot_time(self) -> float:
        try:
            return float(super()._boot_time())  # type: ignore[no-untyped-call]
        except OSError:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class _Accounts(Collector):
    """The live model and per-account gauges, read from the service's health when scraped."""

    def __init__(self) -> None:
        self.health: Health = lambda: (True, {"accounts": {}})

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "spamd_connected",
            "1 while every watched folder of the account is connected, else 0",
            labels=["account"],
        )
        synced = GaugeMetricFamily(
            "spamd_last_sync_timestamp_seconds",
            "When the account's stalest folder last finished a sync (Unix time)",
            labels=["account"],
        )
        _, details = self.health()
        if "model_version" in details:
            yield InfoMetricFamily(
                "spamd_model", "The live model", value={"version": details["model_version"]}
            )
        for name, account in details["accounts"].items():
            connected.add_metric([name], 1.0 if account["connected"] else 0.0)
            if account["last_sync"]:
                synced.add_metric([name], float(account["last_sync"]))
        yield connected
        yield synced
