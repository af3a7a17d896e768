"""The HTTP listener under a stranger's load: idle connections, deep JSON, foreign Host headers.

All on 127.0.0.1. The idle-connection test runs the real daemon with systemd's default
soft limit of 1,024 descriptors and holds 1,000 connections that never send a byte.
"""

from __future__ import annotations

import contextlib
import json
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spamd.ops import web as web_module
from spamd.ops.config import Secret
from spamd.ops.web import MAX_CONNECTIONS, MAX_SCORING
from tests.conftest import ROOT, SPAM, Box, daemon_config, wait_until
from tests.reliability.conftest import Report
from tests.test_service import TOKEN, classify, listener, request

IDLE_CONNECTIONS = 1000  # the first 1,024 descriptors are all a unit gets by default


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes as they are (no client library fixing them up); the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def post_json(port: int, body: bytes, host: str = "127.0.0.1") -> bytes:
    return raw_request(
        port,
        b"POST /classify HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body,
    )


def reset(sock: socket.socket) -> None:
    """Close with a RST, as a client that vanishes does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_deep_json_is_a_400_and_errors_are_never_tracebacks(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with listener() as web:
        deep = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        answer = post_json(web.port, deep)
        assert answer.startswith(b"HTTP/1.0 400"), answer[:100]
        assert b"expected JSON" in answer
        for _ in range(20):  # clients that connect, send half a request and vanish
            sock = socket.create_connection(("127.0.0.1", web.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            reset(sock)
        assert request(web.port, "/healthz")[0] == 503  # still answering
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


def test_a_foreign_host_is_refused_on_loopback() -> None:
    with listener() as web:
        for host in ("evil.example", f"evil.example:{web.port}", "127.0.0.1.nip.io"):
            assert post_json(web.port, b'{"text": "hello"}', host).startswith(b"HTTP/1.0 403")
            answer = raw_request(web.port, f"GET /stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.0 403"), host
        for host in ("127.0.0.1", f"127.0.0.1:{web.port}", f"localhost:{web.port}", "[::1]"):
            answer = raw_request(web.port, f"GET /stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.0 200"), host


def test_healthz_tells_a_stranger_only_a_word() -> None:
    with listener(token=Secret("value", TOKEN, "test")) as web:
        status, headers, body = request(web.port, "/healthz")
        assert (status, body) == (503, b"unhealthy\n")
        assert headers["Content-Type"].startswith("text/plain")
        status, _, body = request(web.port, "/healthz", None, Authorization=f"Bearer {TOKEN}")
        assert status == 503 and json.loads(body)["accounts"] == {"a": {"connected": False}}


def closed_by_server(socks: list[socket.socket]) -> int:
    """How many of these connections the server has closed (a read gives EOF or an error)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed = 0
    for fd, _ in poller.poll(0):
        try:
            closed += by_fd[fd].recv(1, socket.MSG_PEEK) == b""
        except OSError:
            closed += 1
    return closed


def test_scoring_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_module, "REQUEST_TIMEOUT", 0.2)  # how long a request waits
    with listener() as web:
        for _ in range(MAX_SCORING):  # as if that many messages were being scored
            web.scoring.acquire()
        status, error = classify(web.port, SPAM[0].read_bytes(), "message/rfc822")
        assert (status, "retry" in error["error"]) == (503, True)
        web.scoring.release()
        assert classify(web.port, SPAM[0].read_bytes(), "message/rfc822")[0] == 200


@contextlib.contextmanager
def daemon(config_file: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[str]]]:
    """`spamd run` with systemd's default soft limit of 1,024 descriptors, and its output lines."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spamd.cli", "run", "--config", str(config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)),  # noqa: PLW1509
    )  # fmt: skip
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(line.decode() for line in proc.stdout or []), daemon=True
    )
    reader.start()
    try:
        yield proc, output
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        reader.join(timeout=5)
        if proc.stdout:
            proc.stdout.close()


def test_a_thousand_idle_connections_do_not_starve_healthz(
    mailbox: Box, tmp_path: Path, report: Report
) -> None:
    config_file = daemon_config(tmp_path, [mailbox.settings()], http={"listen": "127.0.0.1:0"})
    with daemon(config_file) as (proc, output):
        wait_until(lambda: any('"ready"' in line for line in output), what="spamd ready")
        port = next(json.loads(line)["port"] for line in output if '"http_listening"' in line)
        idle = []
        try:
            for _ in range(IDLE_CONNECTIONS):  # connect and never send a byte
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                idle.append(sock)
            # spamd keeps at most MAX_CONNECTIONS of them and closes the rest.
            wait_until(
                lambda: closed_by_server(idle) >= IDLE_CONNECTIONS - MAX_CONNECTIONS,
                timeout=30,
                what="spamd to close the idle connections beyond its limit",
            )
            started = time.monotonic()
            status, _, body = request(port, "/healthz")
            assert status == 200, body
            assert json.loads(body)["accounts"][mailbox.user]["connected"] is True
            seconds = time.monotonic() - started
            descriptors = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
            report("idle_connections", idle=IDLE_CONNECTIONS, healthz_s=seconds, fds=descriptors)
            assert descriptors < MAX_CONNECTIONS + 50, f"spamd holds {descriptors} descriptors"
        finally:
            for sock in idle:
                reset(sock)
        assert request(port, "/healthz")[0] == 200
    not_json = [line for line in output if line.strip() and not line.startswith("{")]
    assert not not_json, not_json[:5]


@pytest.mark.parametrize("unit", ["spamd.service", "spamd@.service"])
def test_units_raise_the_descriptor_limit(unit: str) -> None:
    lines = (ROOT / "systemd" / unit).read_text().splitlines()
    (limit,) = [line.partition("=")[2] for line in lines if line.startswith("LimitNOFILE=")]
    assert int(limit) >= 16 * 1024  # systemd's default soft limit is 1,024


def test_unreadable_mail_is_a_422_not_a_score(parser_breaker: bytes) -> None:
    with listener() as web:
        message = parser_breaker + SPAM[0].read_bytes()
        status, answer = classify(web.port, message, "message/rfc822")
        assert status == 422
        assert "unreadable message" in answer["error"] and "score" not in answer
