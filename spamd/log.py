"""structlog set-up: JSON lines off a terminal, readable lines on one.

Nothing is configured at import time: `configure` is called once by the CLI.
A last processor drops fields that must never be logged (message bodies,
passwords, tokens), whatever a caller passes by mistake.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

NEVER_LOGGED = frozenset({"password", "secret", "token", "body", "raw", "authorization"})


def _drop_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in NEVER_LOGGED & event.keys():
        event[key] = "[redacted]"
    return event


def configure(
    level: str = "info", fmt: str = "auto", stream: Any = None, counters: Any = None
) -> None:
    """Set up structlog; `counters` is a processor that sees every event (metrics)."""
    stream = stream or sys.stdout
    json_lines = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *([counters] if counters else []),
            _drop_secrets,
            structlog.processors.format_exc_info
            if json_lines
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get(name: str = "spamd") -> Any:
    return structlog.get_logger(name)
