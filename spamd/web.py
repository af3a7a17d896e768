"""The optional HTTP listener: metrics, health, a scoring API and a page for people.

    GET  /          one plain page: paste or drop a message, see score and terms
    GET  /metrics   Prometheus text format (see `telemetry`)
    GET  /healthz   per-account connection state; 200 when healthy, 503 when not
    GET  /stats     today's counts and the live model, as JSON (the page polls it)
    POST /classify  JSON {"text": "..."} or a raw message (Content-Type: message/rfc822)
                    -> {"score", "spam", "threshold", "model_version"}; with
                    ?explain=1 also the terms that pushed the score up and down

Off unless the configuration has an ``http`` section; bound to loopback by
default, and a bearer token is required when it is not (config refuses
otherwise). With a token configured, every path but ``/`` (static) and
``/healthz`` asks for it. CORS headers are sent only for the configured origin.
Message text is never logged.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from spamd.config import Http
from spamd.errors import SpamdError
from spamd.scorer import Scorer
from spamd.telemetry import Telemetry

OPEN_PATHS = ("/", "/healthz")  # answered without the bearer token
TOP_TERMS = 8

Health = Callable[[], tuple[bool, dict[str, Any]]]  # (healthy, details)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class WebServer:
    def __init__(
        self,
        settings: Http,
        *,
        telemetry: Telemetry,
        model: Callable[[], Scorer],
        health: Health,
        log: Any,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.model = model
        self.health = health
        self.log = log
        self._token = settings.token.reveal() if settings.token else None
        self.page = resources.files("spamd").joinpath("page.html").read_bytes()
        handler = type("Handler", (_Handler,), {"app": self})
        try:
            self._server = _Server((settings.host, settings.port), handler)
        except OSError as exc:
            raise SpamdError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror})"
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        self.log.info("http_listening", host=self.settings.host, port=self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def authorized(self, header: str | None) -> bool:
        if self._token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self._token.encode()
        )

    def classify(self, raw: bytes, explain: bool) -> dict[str, Any]:
        model = self.model()
        if explain:
            why = model.explain(raw, TOP_TERMS)
            score, extra = (
                why.score,
                {
                    "up": [{"term": t.term, "weight": round(t.weight, 4)} for t in why.up],
                    "down": [{"term": t.term, "weight": round(t.weight, 4)} for t in why.down],
                },
            )
        else:
            score, extra = model.score(raw), {}
        return {
            "score": round(score, 6),
            "spam": model.is_spam(score),
            "threshold": round(model.threshold, 6),
            "model_version": model.version,
            **extra,
        }


class _Handler(BaseHTTPRequestHandler):
    app: WebServer
    server_version = "spamd"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are not logged (their bodies would be mail)."""

    # -- routing ---------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not self._allowed(path):
            return
        if path == "/":
            self._send(HTTPStatus.OK, self.app.page, "text/html; charset=utf-8")
        elif path == "/metrics":
            self._send(
                HTTPStatus.OK, generate_latest(self.app.telemetry.registry), CONTENT_TYPE_LATEST
            )
        elif path == "/healthz":
            healthy, details = self.app.health()
            status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
            self._json(status, {"healthy": healthy, **details})
        elif path == "/stats":
            self._json(
                HTTPStatus.OK,
                {
                    "today": self.app.telemetry.today_counts(),
                    "model_version": self.app.model().version,
                },
            )
        elif path == "/classify":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path: {path}")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.path):
            return
        if url.path != "/classify":
            self._error(HTTPStatus.NOT_FOUND, f"no such path: {url.path}")
            return
        raw = self._message()
        if raw is None:
            return
        explain = parse_qs(url.query).get("explain", ["0"])[0] not in ("0", "", "false")
        self._json(HTTPStatus.OK, self.app.classify(raw, explain))

    def do_OPTIONS(self) -> None:  # CORS preflight
        if self._cors_origin() is None:
            self._error(HTTPStatus.FORBIDDEN, "cross-origin requests are not allowed")
            return
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors_headers()
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    # -- requests ----------------------------------------------------------------------

    def _allowed(self, path: str) -> bool:
        if path in OPEN_PATHS or self.app.authorized(self.headers.get("Authorization")):
            return True
        self._error(
            HTTPStatus.UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer <the configured token>",
            {"WWW-Authenticate": 'Bearer realm="spamd"'},  # RFC 6750: how to authenticate
        )
        return False

    def _message(self) -> bytes | None:
        """The posted message as raw bytes, or None after answering with an error."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
            return None
        if length > self.app.settings.max_request_bytes:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{length} bytes is more than the limit of {self.app.settings.max_request_bytes}",
            )
            self.close_connection = True
            return None
        body = self.rfile.read(length) if length > 0 else b""
        kind = (self.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        raw: bytes | None
        if kind == "message/rfc822":
            raw = body
        elif kind in ("application/json", ""):
            raw = self._text(body)
            if raw is None:
                return None
        else:
            self._error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"send application/json or message/rfc822, not {kind}",
            )
            return None
        if not raw.strip():
            self._error(HTTPStatus.BAD_REQUEST, "the message is empty")
            return None
        return raw

    def _text(self, body: bytes) -> bytes | None:
        try:
            data = json.loads(body)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, 'expected JSON like {"text": "..."}')
            return None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            self._error(HTTPStatus.BAD_REQUEST, 'expected JSON like {"text": "..."}')
            return None
        # Plain text is a body without headers: the blank line says so.
        text: str = data["text"]
        return b"\r\n" + text.encode("utf-8", "replace")

    # -- responses ---------------------------------------------------------------------

    def _cors_origin(self) -> str | None:
        allowed = self.app.settings.cors_origin
        origin = self.headers.get("Origin")
        return origin if allowed and origin == allowed else None

    def _cors_headers(self) -> None:
        origin = self._cors_origin()
        if origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self._cors_headers()
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(
        self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json", headers)
