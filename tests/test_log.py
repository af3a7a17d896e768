"""Log lines: JSON off a terminal, the lines of libraries included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from spamd.ops import log as log_lib
from tests.conftest import wait_until


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """spamd's logging set up as off a terminal, into a buffer; undone afterwards."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    log_lib.configure("info", "auto", stream=out)
    try:
        yield out
    finally:
        if log_lib._handler is not None:
            root.removeHandler(log_lib._handler)
            log_lib._handler = None
        root.setLevel(level)
        structlog.reset_defaults()


def failing_job() -> None:
    raise ZeroDivisionError("a job that fails")


def test_a_library_line_is_json_like_ours(json_log: io.StringIO) -> None:
    log_lib.get().info("ours", uid=7)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(failing_job, "date", run_date=datetime.now(UTC), id="failing")
    scheduler.start()
    try:
        wait_until(lambda: "a job that fails" in json_log.getvalue(), what="APScheduler's line")
        # Its scheduler thread removes the run job after handing it over: a shutdown
        # before then makes that removal fail in the thread.
        wait_until(lambda: not scheduler.get_jobs(), what="the job done with")
    finally:
        scheduler.shutdown()
    records = [json.loads(line) for line in json_log.getvalue().splitlines()]  # every line
    ours, theirs = records[0], records[-1]
    assert (ours["event"], ours["level"], ours["uid"]) == ("ours", "info", 7)
    assert theirs["logger"] == "apscheduler.executors.default"
    assert theirs["level"] == "error" and "raised an exception" in theirs["event"]
    assert "ZeroDivisionError: a job that fails" in theirs["exception"]
    assert set(ours) - {"uid"} <= set(theirs)  # the same timestamp, level and event fields
    assert len(records) == 2  # APScheduler's INFO chatter (job added, scheduler started) is not
