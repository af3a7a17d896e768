"""Prometheus metrics, counted from the daemon's canonical log lines.

Every decision, correction, retrain and failure is already logged exactly once
(one canonical event each), so the metrics are counted where those events pass:
`Telemetry.processor` is a structlog processor placed before the renderer. No
watcher or job has to know that metrics exist, and a figure can never disagree
with the log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "spamd_messages", "Messages classified", ["account", "verdict", "reason"], registry=r
        )
        self.moves = Counter("spamd_moves", "Messages moved to Junk", ["account"], registry=r)
        self.move_failures = Counter(
            "spamd_move_failures",
            "Moves the server refused or that failed",
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
        self.latency = Histogram(
            "spamd_classification_seconds",
            "Fetch, classify and act on one message",
            buckets=LATENCY_BUCKETS,
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
        self.model = Info("spamd_model", "The live model", registry=r)
        self.up_since = Gauge("spamd_start_time_seconds", "When spamd started", registry=r)
        self.up_since.set(time.time())
        self._lock = threading.Lock()
        self._connected: set[tuple[str, str]] = set()
        self._day = ""
        self._today: dict[str, int] = {}  # "decisions" / "junked" / "corrections" since 00:00 UTC

    def today_counts(self) -> dict[str, int]:
        with self._lock:
            today = time.strftime("%Y-%m-%d", time.gmtime())
            return dict(self._today) if self._day == today else {}

    def set_model(self, version: str) -> None:
        self.model.info({"version": version})

    def processor(
        self, _: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Count one log event (a structlog processor: returns it unchanged)."""
        name = str(event.get("event", ""))
        account = str(event.get("account", ""))
        if name == "message":
            self._message(account, event)
        elif name == "correction":
            self.corrections.labels(account, str(event.get("label"))).inc()
            self._count_today("corrections")
        elif name == "move_failed":
            self.move_failures.labels(account).inc()
        elif name == "connected":
            self._connected_again(account, str(event.get("folder", "")))
        elif name == "retrained":
            self.retrains.labels("promoted" if event.get("promoted") else "refused").inc()
        elif name == "retrain_failed":
            self.retrains.labels("failed").inc()
        elif name in ("calibrated", "calibration_refused"):
            self._calibration(account, event)
        elif name == "model_swapped":
            self.set_model(str(event.get("new", "")))
        if method in ("error", "exception", "critical", "warning"):
            self.errors.labels(name).inc()
        return event

    def _message(self, account: str, event: MutableMapping[str, Any]) -> None:
        action = str(event.get("action", ""))
        verdict = "spam" if action in ("move", "flag", "log") else "ham"
        self.messages.labels(account, verdict, str(event.get("reason", ""))).inc()
        if action == "move":
            self.moves.labels(account).inc()
        if "ms" in event:
            self.latency.observe(float(event["ms"]) / 1000)
        self._count_today("decisions")
        if verdict == "spam":
            self._count_today("junked")

    def _calibration(self, account: str, event: MutableMapping[str, Any]) -> None:
        self.threshold.labels(account).set(float(event.get("threshold", 0.0)))
        self.move_at.labels(account).set(float(event.get("move_at", 0.0)))
        for label, key in (("ham", "ham"), ("spam", "spam")):
            self.calibration_sample.labels(account, label).set(float(event.get(key, 0)))

    def _connected_again(self, account: str, folder: str) -> None:
        with self._lock:
            seen = (account, folder) in self._connected
            self._connected.add((account, folder))
        if seen:
            self.reconnects.labels(account).inc()

    def _count_today(self, what: str) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        with self._lock:
            if day != self._day:
                self._day, self._today = day, {}
            self._today[what] = self._today.get(what, 0) + 1
