"""Metrics counted where the work happens, whatever the log level; journald priorities."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spamd.core.scorer import Scorer, load
from spamd.daemon.service import LiveModel
from spamd.daemon.watcher import FolderWatcher, Readings, read, read_all
from spamd.demo import sandbox
from spamd.mail.imap import Connection
from spamd.ops import config as config_lib
from spamd.ops import log as log_lib
from spamd.ops.config import Account
from spamd.ops.telemetry import ProcessMetrics, Telemetry
from spamd.store.state import State
from tests.conftest import (
    HAM,
    SHIPPED_MODEL,
    SPAM,
    Box,
    Events,
    daemon,
    daemon_config,
    spamd_config,
    wait_until,
)  # fmt: skip
from tests.reliability.proxy import FaultProxy
from tests.test_learning import junk_seen

PROMTOOL = shutil.which("promtool")


def scrape(port: int) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def metric(port: int, name: str, **labels: str) -> float:
    try:
        return value(scrape(port), name, **labels)
    except OSError:  # not listening yet
        return 0.0


def move_all(box: Box, source: str, target: str) -> None:
    """What a user's mail client does when they drag every message of a folder."""
    box.client.select_folder(source)
    box.client.move(box.client.search("ALL"), target)
    box.client.unselect_folder()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (scripts/setup: prometheus)")
def test_every_counter_moves_at_log_level_warning_and_promtool_finds_nothing(
    mailbox: Box, tmp_path: Path
) -> None:
    proxy = FaultProxy(mailbox.server.imap_port)
    port = sandbox.free_port()
    config_file = daemon_config(
        tmp_path,
        [mailbox.settings(port=proxy.port, timeout=3)],
        http={"listen": f"127.0.0.1:{port}"},
        log={"level": "warning", "format": "json"},
        learning={"retrain_delay": 0.2},
        housekeeping_interval=3600,
    )
    user = mailbox.user
    try:
        with daemon(config_file) as output:
            wait_until(lambda: metric(port, "spamd_connected", account=user) == 1, what="connected")
            proxy.arm(r"UID MOVE", "refuse")
            mailbox.append(SPAM[0].read_bytes())
            wait_until(lambda: metric(port, "spamd_move_failures_total", account=user) == 1)
            mailbox.append(HAM[0].read_bytes())  # the next sync moves the spam after all
            wait_until(lambda: metric(port, "spamd_moves_total", account=user) == 1)
            wait_until(lambda: mailbox.count("Junk") == 1)
            junk_seen(mailbox, config_lib.load(config_file, SHIPPED_MODEL))
            move_all(mailbox, "Junk", "INBOX")  # the user: "not spam"
            # Generous: under load, the rescue waits for IDLE news through the proxy.
            wait_until(
                lambda: metric(port, "spamd_corrections_total", label="ham") == 1, timeout=60
            )
            wait_until(lambda: metric(port, "spamd_retrains_total") == 1, timeout=90)
            proxy.cut_all()
            wait_until(lambda: metric(port, "spamd_reconnects_total", account=user) >= 1)
            wait_until(lambda: metric(port, "spamd_connected", account=user) == 1)
            text = scrape(port)
            lines = list(output)
    finally:
        proxy.close()
    assert value(text, "spamd_messages_total", account=user, verdict="spam") == 1
    assert value(text, "spamd_messages_total", account=user, verdict="ham") == 2  # + the rescue
    assert value(text, "spamd_classification_seconds_count") == 3
    assert value(text, "spamd_errors_total", kind="move_failed") == 1
    assert value(text, "spamd_last_sync_timestamp_seconds", account=user) > 0
    assert value(text, "spamd_model_info") == 1
    assert value(text, "process_resident_memory_bytes") > 0
    assert "_created" not in text
    events = [json.loads(line)["event"] for line in lines]
    assert "message" not in events and "move_failed" in events  # the level was obeyed
    done = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == ""


def test_the_classification_histogram_holds_the_time_to_read_each_message(
    mailbox: Box, tmp_path: Path
) -> None:
    """Per message, reading only: not a batch's average and not the FETCH or the MOVE."""
    assert read(SPAM[0].read_bytes(), load(SHIPPED_MODEL), 1 << 18).seconds > 0

    def read_slowly(scorer: Scorer, raws: Sequence[bytes], max_bytes: int, fp: bool) -> Readings:
        readings = [
            dataclasses.replace(r, seconds=0.3) for r in read_all(scorer, raws, max_bytes, fp)()
        ]
        return lambda: readings

    config = spamd_config(tmp_path, mailbox.settings())
    telemetry = Telemetry()
    state = State(tmp_path / "state.sqlite")
    stop = threading.Event()
    account: Account = config.accounts[0]
    watcher = FolderWatcher(
        account, "INBOX", connect=Connection.open, model=LiveModel(SHIPPED_MODEL, Events.logger()),
        state=state, log=Events.logger(), stop=stop, read=read_slowly, metrics=telemetry,
    )  # fmt: skip
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: watcher.health.last_sync, what="first sync")
        for path in (SPAM[0], SPAM[1], HAM[0]):
            mailbox.append(path.read_bytes())
        wait_until(lambda: watcher.health.handled == 3, what="three messages")
    finally:
        stop.set()
        watcher.wake.set()
        thread.join(10)
        state.close()
    text = generate_latest(telemetry.registry).decode()
    assert value(text, "spamd_classification_seconds_count") == 3
    assert value(text, "spamd_classification_seconds_sum") == pytest.approx(0.9)


def test_lines_to_the_journal_carry_their_syslog_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        try:
            log_lib.configure("info", "json", stream=stream)
            log = log_lib.get()
            log.info("started")
            log.warning("connection_failed")
            log.error("move_failed")
            log.debug("not_shown")
        finally:
            structlog.reset_defaults()
    lines = path.read_text().splitlines()
    assert [line[:4] for line in lines] == ["<6>{", "<4>{", "<3>{"]
    assert json.loads(lines[1][3:])["event"] == "connection_failed"


def test_lines_elsewhere_have_no_priority_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log"
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # the journal, but not this stream
    with path.open("w") as stream:
        try:
            log_lib.configure("info", "json", stream=stream)
            log_lib.get().warning("connection_failed")
        finally:
            structlog.reset_defaults()
    assert json.loads(path.read_text())["event"] == "connection_failed"


def test_process_metrics_survive_a_proc_with_only_processes(tmp_path: Path) -> None:
    """As under the units' ProcSubset=pid: /proc/self is there, /proc/stat is not."""
    (tmp_path / "self").symlink_to("/proc/self")
    registries = {"pid-only": CollectorRegistry(), "full": CollectorRegistry()}
    ProcessMetrics(proc=str(tmp_path), registry=registries["pid-only"])
    ProcessMetrics(registry=registries["full"])
    pid_only, full = (generate_latest(r).decode() for r in registries.values())
    assert value(pid_only, "process_resident_memory_bytes") > 0
    started = value(pid_only, "process_start_time_seconds")
    assert started == pytest.approx(value(full, "process_start_time_seconds"), abs=1.0)
