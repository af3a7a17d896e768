"""Soak: many accounts and a steady stream of mail; memory and descriptors must not grow."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests import sandbox
from tests.conftest import ROOT, Box, can_log_in, daemon_config, wait_until
from tests.reliability.conftest import MODEL_VERDICTS, Report, variant

RSS_GROWTH_MB = 20.0  # the stated bounds, after warm-up
FD_GROWTH = 10


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def test_memory_and_descriptors_stay_flat_under_a_stream_of_mail(
    dovecot: sandbox.Dovecot, tmp_path: Path, long_mode: bool, report: Report
) -> None:
    accounts, seconds, rate = (50, 30 * 60, 10.0) if long_mode else (10, 20, 10.0)
    users = [f"soak{i}" for i in range(accounts)]
    dovecot.set_users({**dovecot.users, **dict.fromkeys(users, "pw")})
    boxes = [Box(dovecot, u, "pw", tmp_path) for u in users]
    wait_until(lambda: can_log_in(boxes[-1]), timeout=5)
    config = daemon_config(tmp_path, [b.settings(**MODEL_VERDICTS) for b in boxes])
    log = tmp_path / "spamd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spamd.cli", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    sent = 0
    stop = threading.Event()

    def feed() -> None:
        nonlocal sent
        while not stop.is_set():
            boxes[sent % accounts].append(variant(sent)[0])
            sent += 1
            stop.wait(1 / rate)

    try:
        wait_until(lambda: log.read_bytes().count(b'"first_sync"') >= accounts, timeout=60)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        samples: list[tuple[float, float, int]] = []
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            samples.append((time.monotonic() - started, _rss_mb(proc.pid), _fds(proc.pid)))
            time.sleep(max(1.0, seconds / 100))
        stop.set()
        feeder.join()
        wait_until(
            lambda: log.read_bytes().count(b'"event": "message"') >= sent,
            timeout=60,
            what=f"spamd to handle all {sent} messages",
        )
    finally:
        proc.terminate()
        proc.wait(30)
        for box in boxes:
            box.close()
    warm = [s for s in samples if s[0] >= seconds * 0.2]  # after warm-up
    rss_growth = max(s[1] for s in warm) - warm[0][1]
    fd_growth = max(s[2] for s in warm) - warm[0][2]
    report(
        "soak",
        accounts=accounts,
        minutes=round(seconds / 60, 1),
        messages=sent,
        rss_after_warmup_mb=round(warm[0][1], 1),
        rss_max_mb=round(max(s[1] for s in warm), 1),
        rss_growth_mb=round(rss_growth, 1),
        fds_after_warmup=warm[0][2],
        fd_growth=fd_growth,
    )
    assert rss_growth <= RSS_GROWTH_MB
    assert fd_growth <= FD_GROWTH
