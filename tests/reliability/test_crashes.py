"""spamd killed with SIGKILL at random moments while it moves a batch of 500 messages."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from spamd.store.state import FILE_NAME, State, state_path
from tests import sandbox
from tests.conftest import ROOT, Box, daemon_config, new_box, spamd_config, wait_until
from tests.reliability.conftest import (
    MODEL_VERDICTS,
    Report,
    all_decided,
    assert_decided_once,
    assert_each_once_and_spam_in_junk,
    inventory,
    variant,
)

BATCH = 500


def start(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "spamd.cli", "run", "--config", str(config_file)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


# Servers without MOVE: the COPY + UID EXPUNGE fallback, and the flag fallback
# where there is not even UIDPLUS (long mode only: each adds its trials' time).
FALLBACKS = [layout for layout in sandbox.LAYOUTS if "MOVE" in layout.hide]


@pytest.mark.parametrize("layout", [sandbox.DEFAULT, *FALLBACKS], ids=str)
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    dovecot: sandbox.Dovecot,
    tmp_path: Path,
    long_mode: bool,
    report: Report,
    layout: sandbox.Layout,
) -> None:
    if layout != sandbox.DEFAULT and not long_mode:
        pytest.skip("the fallback layouts' trials run in long mode (--long)")
    trials = 50 if long_mode else 3
    rng = random.Random(int(os.environ.get("SPAMD_CRASH_SEED", "20261122")))
    totals: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        if layout != sandbox.DEFAULT:
            dovecot = stack.enter_context(sandbox.running({}, layout))
        for trial in range(trials):
            totals += _trial(dovecot, tmp_path / f"crash{trial}", trial, rng)
    report(
        "sigkill_trials",
        layout=layout.name,
        trials=trials,
        messages=trials * BATCH,
        kills=totals["kills"],
        kills_mid_batch=totals["kills_mid_batch"],
        lost=totals["lost"],
        duplicated=totals["duplicated"],
    )
    assert totals["lost"] == totals["duplicated"] == 0


def _trial(dovecot: sandbox.Dovecot, work: Path, trial: int, rng: random.Random) -> Counter[str]:
    """Seed 500 messages, kill spamd 1-3 times while it handles them, let it finish, check."""
    user = work.name
    work.mkdir()
    box = new_box(dovecot, user, work)
    messages = {n: variant(n) for n in range(trial * BATCH, (trial + 1) * BATCH)}
    dovecot.seed_maildir(user, [raw for raw, _ in messages.values()])
    settings = box.settings(scan_existing=True, **MODEL_VERDICTS)
    config_file = daemon_config(work, [settings])
    log = work / "spamd.log"
    junked = sum(j for _, j in messages.values())
    flags = {"MOVE", "UIDPLUS"} <= set(dovecot.layout.hide)
    kills = rng.randint(1, 3)
    mid_batch = 0
    for _ in range(kills):
        before = _connects(log)
        proc = start(config_file, log)
        if rng.random() < 0.2:  # now and then while it starts, connects or logs in
            time.sleep(rng.uniform(0.1, 1.0))
        else:  # mostly while it works through the batch (about half a second)
            wait_until(partial(_connected_since, log, before), timeout=20)
            time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_batch += 0 < _decided(work / "state") < BATCH
    try:
        proc = start(config_file, log)
        state_file = state_path(spamd_config(work, settings))
        try:
            if flags:  # neither MOVE nor UIDPLUS: spam is flagged in place
                wait_until(lambda: flagged(box) >= junked, timeout=90, what=f"trial {trial}")
            else:
                wait_until(lambda: box.count("Junk") >= junked, timeout=90, what=f"trial {trial}")
                wait_until(lambda: box.count("INBOX") == BATCH - junked, timeout=30)
            # A kill between MOVE and its bookkeeping leaves the mail in place but a row
            # pending: the restarted daemon's first sync must settle it.
            wait_until(partial(all_decided, state_file, user, messages), timeout=30)
        finally:
            proc.terminate()
            proc.wait(15)
        copies: Counter[str] = Counter()
        for found in inventory(box).values():
            for (message_id, _), n in found.items():
                copies[message_id] += n
        wanted = [f"<reliability-{n}@spamd.test>" for n in messages]
        outcome = Counter(
            kills=kills,
            kills_mid_batch=mid_batch,
            lost=sum(copies[m] == 0 for m in wanted),
            duplicated=sum(max(0, copies[m] - 1) for m in wanted),
        )
        assert_each_once_and_spam_in_junk(box, messages, junk="INBOX" if flags else "Junk")
        if flags:
            assert flagged(box) == junked
        assert_decided_once(state_file, user, messages)
        assert "internal_error" not in log.read_text()
    finally:
        box.close()
    return outcome


def flagged(box: Box) -> int:
    box.client.select_folder("INBOX", readonly=True)
    found = len(box.client.search(["KEYWORD", "$Junk"]))
    box.client.unselect_folder()
    return found


def _decided(state_dir: Path) -> int:
    """Decisions recorded so far (0 when spamd died before it made the database)."""
    if not (state_dir / FILE_NAME).exists():
        return 0
    state = State(state_dir / FILE_NAME)
    try:
        return len(state.decisions(limit=10**6))
    finally:
        state.close()


def _connects(log: Path) -> int:
    return log.read_bytes().count(b'"connected"') if log.exists() else 0


def _connected_since(log: Path, before: int) -> bool:
    return _connects(log) > before
