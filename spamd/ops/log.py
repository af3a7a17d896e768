"""structlog set-up: JSON lines off a terminal, readable lines on one.

Nothing is configured at import time: `configure` is called once by the CLI.
A last processor drops fields that must never be logged (message bodies,
passwords, tokens), whatever a caller passes by mistake.

When the stream is systemd's journal (``$JOURNAL_STREAM`` names it), each line
starts with its syslog priority (``<4>`` for a warning, sd-daemon(3)), so
`journalctl -p warning` shows spamd's warnings and errors.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

NEVER_LOGGED = frozenset({"password", "secret", "token", "body", "raw", "authorization"})
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}
SYSLOG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "exception": 3, "critical": 2}


def _drop_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in NEVER_LOGGED & event.keys():
        event[key] = "[redacted]"
    return event


LIBRARY_LEVEL = logging.WARNING  # libraries' own INFO lines (APScheduler: every job run) are noise
_handler: logging.Handler | None = None  # ours on the root logger, replaced by each configure()


def _syslog_prefix(_: Any, method: str, line: Any) -> str:
    return f"<{SYSLOG_PRIORITY.get(method, 6)}>{line}"


def is_journal(stream: Any) -> bool:
    """Whether `stream` is the journal stream systemd connected (`$JOURNAL_STREAM`)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return bool(expected) and expected == f"{st.st_dev}:{st.st_ino}"


def configure(
    level: str = "info", fmt: str = "auto", stream: Any = None, counters: Any = None
) -> None:
    """Set up structlog; `counters` is a processor that sees every warning and error
    (`telemetry.Telemetry.processor`), whatever the level set here.

    Libraries that log through the standard `logging` module (APScheduler, urllib3,
    ...) are rendered by the same processors: off a terminal their lines are JSON too,
    with a "logger" field naming the library."""
    global _handler  # noqa: PLW0603 - one root handler per process, like logging's own
    stream = stream or sys.stdout
    json_lines = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    last = [
        _drop_secrets,
        structlog.processors.format_exc_info
        if json_lines
        else structlog.processors.StackInfoRenderer(),
        renderer,
        *([_syslog_prefix] if is_journal(stream) else []),
    ]
    threshold = LEVELS[level]

    def below_level(_: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if LEVELS.get(method, logging.INFO) < threshold:
            raise structlog.DropEvent
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            *([counters] if counters else []),
            below_level,
            *last,
        ],
        # Warnings and errors always reach `counters`; `below_level` drops them after.
        wrapper_class=structlog.make_filtering_bound_logger(min(threshold, logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(max(threshold, LIBRARY_LEVEL))
    _handler = handler


def get(name: str = "spamd") -> Any:
    return structlog.get_logger(name)
