"""The optional HTTP listener: metrics, health, a scoring API and a page for people.

    GET  /          one plain page: paste or drop a message, see score and terms
    GET  /metrics   Prometheus text format (see `telemetry`)
    GET  /healthz   200 when every account is connected, 503 when not; with the token
                    (or with none configured) per-account details, else one word
    GET  /stats     today's counts and the live model, as JSON (the page polls it)
    POST /classify  JSON {"text": "..."} or a raw message (Content-Type: message/rfc822)
                    -> {"score", "spam", "threshold", "model_version"}; with
                    ?explain=1 also the terms that pushed the score up and down

Off unless the configuration has an ``http`` section; bound to loopback by
default, and a bearer token is required when it is not (config refuses
otherwise). With a token configured, every path but ``/`` (static) and
``/healthz`` asks for it. CORS headers are sent only for the configured origin.
Message text is never logged.

Strangers cannot starve it: each read or write on a connection times out, at
most `MAX_CONNECTIONS` are open at once (a new one pushes out the oldest that
has not finished sending its request), at most `MAX_SCORING` messages are scored
at once, and errors are logged as one JSON line, never as a traceback. On
loopback, a request naming another host (a page in a browser whose name was
re-pointed at 127.0.0.1: DNS rebinding) is refused.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from spamd.core.scorer import Scorer
from spamd.errors import SpamdError, UnreadableMessage
from spamd.ops.config import Http, is_loopback
from spamd.ops.telemetry import Telemetry

OPEN_PATHS = ("/", "/healthz")  # answered without the bearer token
TOP_TERMS = 8
MAX_CONNECTIONS = 64  # open at once; each holds a thread and a descriptor
MAX_SCORING = 2  # POST /classify scored at once (CPU work); others wait, then get 503
REQUEST_TIMEOUT = 10.0  # seconds for each read or write on a connection

Health = Callable[[], tuple[bool, dict[str, Any]]]  # (healthy, details)


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most `MAX_CONNECTIONS` of them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # waiting to be accepted: the kernel's, not our descriptors

    def __init__(self, address: tuple[str, int], handler: type[_Handler], log: Any) -> None:
        super().__init__(address, handler)
        self.log = log
        self._lock = threading.Lock()
        # Open connections, oldest first -> whether their request is being answered.
        self._open: dict[socket.socket, bool] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._open) >= MAX_CONNECTIONS:
                oldest = next((c for c, answering in self._open.items() if not answering), None)
                if oldest is not None:  # still sending its request (or idle): it goes
                    del self._open[oldest]
                    with contextlib.suppress(OSError):
                        oldest.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
            full = len(self._open) >= MAX_CONNECTIONS  # every one of them being answered
            if not full:
                self._open[request] = False
        if full:
            super().shutdown_request(request)
        else:
            super().process_request(request, client_address)

    def answering(self, request: socket.socket) -> None:
        """The request has come in whole: its connection is no longer pushed out."""
        with self._lock:
            if request in self._open:
                self._open[request] = True

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One JSON log line instead of socketserver's traceback on stderr."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client gone or too slow is routine
            self.log.error("http_error", kind=type(error).__name__)


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
        self.loopback = is_loopback(settings.host)
        self.scoring = threading.BoundedSemaphore(MAX_SCORING)
        self.page = resources.files("spamd.ops").joinpath("page.html").read_bytes()
        handler = type("Handler", (_Handler,), {"app": self})
        try:
            self._server = _Server((settings.host, settings.port), handler, log)
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
    server: _Server
    server_version = "spamd"
    sys_version = ""
    timeout = REQUEST_TIMEOUT  # for each read and write on the connection

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are not logged (their bodies would be mail)."""

    # -- routing ---------------------------------------------------------------------

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def do_OPTIONS(self) -> None:
        self._guarded(self._options)

    def _guarded(self, answer: Callable[[], None]) -> None:
        """Answer, unless the Host is foreign; a bug is a 500 and one log line."""
        try:
            if self._host_allowed():
                answer()
        except OSError:
            raise  # the client left or was too slow: `_Server.handle_error` stays quiet
        except Exception as exc:  # noqa: BLE001 - logged as one JSON line, answered with 500
            self.app.log.error("http_internal_error", kind=type(exc).__name__)
            with contextlib.suppress(OSError):
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _get(self) -> None:
        self.server.answering(self.connection)
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
            if self.app.authorized(self.headers.get("Authorization")):
                self._json(status, {"healthy": healthy, **details})
            else:  # strangers learn no account, folder or server error
                word = b"ok\n" if healthy else b"unhealthy\n"
                self._send(status, word, "text/plain; charset=utf-8")
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

    def _post(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.path):
            return
        if url.path != "/classify":
            self._error(HTTPStatus.NOT_FOUND, f"no such path: {url.path}")
            return
        raw = self._message()
        if raw is None:
            return
        self.server.answering(self.connection)
        explain = parse_qs(url.query).get("explain", ["0"])[0] not in ("0", "", "false")
        if not self.app.scoring.acquire(timeout=REQUEST_TIMEOUT):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "too many messages being scored; retry")
            return
        try:
            result = self.app.classify(raw, explain)
        except UnreadableMessage as exc:  # never scored as if it were empty
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
            return
        finally:
            self.app.scoring.release()
        self._json(HTTPStatus.OK, result)

    def _options(self) -> None:  # CORS preflight
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

    def _host_allowed(self) -> bool:
        """On loopback, only requests for a loopback name (no DNS rebinding). Browsers
        always send Host; a request without one comes from no web page."""
        host = self.headers.get("Host")
        if not self.app.loopback or host is None:
            return True
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:
            name = ""
        if is_loopback(name):
            return True
        self._error(HTTPStatus.FORBIDDEN, "this listener answers only requests for a loopback host")
        return False

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
        except (ValueError, RecursionError):  # RecursionError: nested too deep
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
