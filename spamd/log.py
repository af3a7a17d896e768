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
    (`telemetry.Telemetry.processor`), whatever the level set here."""
    stream = stream or sys.stdout
    json_lines = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    threshold = LEVELS[level]

    def below_level(_: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if LEVELS.get(method, logging.INFO) < threshold:
            raise structlog.DropEvent
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *([counters] if counters else []),
            below_level,
            _drop_secrets,
            structlog.processors.format_exc_info
            if json_lines
            else structlog.processors.StackInfoRenderer(),
            renderer,
            *([_syslog_prefix] if is_journal(stream) else []),
        ],
        # Warnings and errors always reach `counters`; `below_level` drops them after.
        wrapper_class=structlog.make_filtering_bound_logger(min(threshold, logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get(name: str = "spamd") -> Any:
    return structlog.get_logger(name)
