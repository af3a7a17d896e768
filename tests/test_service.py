"""Running as a service: systemd notification, the HTTP listener, secrets kept out of logs."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from spamd.daemon.service import LiveModel
from spamd.errors import ConfigError
from spamd.ops import config as config_lib
from spamd.ops.config import Http, Secret
from spamd.ops.telemetry import Telemetry
from spamd.ops.web import WebServer
from tests.conftest import (
    HAM,
    ROOT,
    SHIPPED_MODEL,
    SPAM,
    Box,
    Events,
    daemon,
    daemon_config,
    wait_until,
)

TOKEN = "tok-7Qm2vX9rLk"  # noqa: S105 - a test value, looked for in the logs


def request(
    port: int, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def classify(port: int, body: bytes, content_type: str, **headers: str) -> tuple[int, Any]:
    status, _, data = request(port, "/classify", body, **{"Content-Type": content_type}, **headers)
    return status, json.loads(data)


# -- the listener on its own (the shipped model, no IMAP) ----------------------------


@contextlib.contextmanager
def listener(telemetry: Telemetry | None = None, **settings: Any) -> Iterator[WebServer]:
    http = Http(**{"host": "127.0.0.1", "port": 0, "token": None, **settings})
    web = WebServer(
        http,
        telemetry=telemetry or Telemetry(),
        model=LiveModel(SHIPPED_MODEL, Events.logger()),
        health=lambda: (False, {"accounts": {"a": {"connected": False}}}),
        log=Events.logger(),
    )
    web.start()
    try:
        yield web
    finally:
        web.stop()


def test_classify_answers_json_and_raw_mail_and_refuses_bad_input() -> None:
    with listener(max_request_bytes=64 * 1024) as web:
        status, spam = classify(web.port, SPAM[0].read_bytes(), "message/rfc822")
        assert status == 200
        assert spam["spam"] is True and spam["score"] >= spam["threshold"]
        assert set(spam) == {"score", "spam", "threshold", "model_version"}
        status, ham = classify(
            web.port, json.dumps({"text": "Lunch on Thursday? I can do noon."}).encode(),
            "application/json",
        )  # fmt: skip
        assert status == 200 and ham["spam"] is False
        status, _, data = request(
            web.port, "/classify?explain=1", SPAM[0].read_bytes(),
            **{"Content-Type": "message/rfc822"},
        )  # fmt: skip
        explained = json.loads(data)
        assert status == 200 and explained["up"] and "term" in explained["up"][0]

        for body, kind, code, words in [
            (b"", "message/rfc822", 400, "empty"),
            (b"{not json", "application/json", 400, "expected JSON"),
            (json.dumps({"text": 5}).encode(), "application/json", 400, "expected JSON"),
            (json.dumps({"text": "  "}).encode(), "application/json", 400, "empty"),
            (b"x", "image/png", 415, "message/rfc822"),
            (b"x" * (64 * 1024 + 1), "message/rfc822", 413, "limit"),
        ]:
            status, error = classify(web.port, body, kind)
            assert (status, words in error["error"]) == (code, True), (kind, body[:20])
        assert request(web.port, "/classify")[0] == 405
        assert request(web.port, "/nowhere")[0] == 404
        status, _, health = request(web.port, "/healthz")
        assert status == 503 and json.loads(health)["healthy"] is False


def test_a_configured_token_is_required_except_for_the_page_and_health() -> None:
    with listener(token=Secret("value", TOKEN, "test")) as web:
        assert classify(web.port, SPAM[0].read_bytes(), "message/rfc822")[0] == 401
        wrong = {"Authorization": "Bearer nope"}
        assert classify(web.port, SPAM[0].read_bytes(), "message/rfc822", **wrong)[0] == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert classify(web.port, SPAM[0].read_bytes(), "message/rfc822", **right)[0] == 200
        status, headers, body = request(web.port, "/metrics")
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="spamd"'
        assert "Authorization: Bearer" in json.loads(body)["error"]
        assert request(web.port, "/metrics", None, **right)[0] == 200
        assert request(web.port, "/")[0] == 200
        assert request(web.port, "/healthz")[0] == 503  # answered, unhealthy


def test_cors_headers_only_for_the_configured_origin() -> None:
    with listener(cors_origin="https://admin.example.org") as web:
        _, headers, _ = request(web.port, "/stats", Origin="https://admin.example.org")
        assert headers.get("Access-Control-Allow-Origin") == "https://admin.example.org"
        _, headers, _ = request(web.port, "/stats", Origin="https://evil.example")
        assert "Access-Control-Allow-Origin" not in headers
    with listener() as web:
        _, headers, _ = request(web.port, "/stats", Origin="https://admin.example.org")
        assert "Access-Control-Allow-Origin" not in headers


@pytest.mark.parametrize(
    ("listen", "token", "error"),
    [
        ("0.0.0.0:8025", None, "bearer token is required when listening on 0.0.0.0"),
        ("[::]:8025", None, "bearer token is required when listening on ::"),
        ("localhost", None, "expected HOST:PORT"),
        ("127.0.0.1:99999", None, "expected HOST:PORT"),
        ("0.0.0.0:8025", TOKEN, None),
        ("127.0.0.1:8025", None, None),
    ],
)
def test_http_settings_are_checked(
    tmp_path: Path, listen: str, token: str | None, error: str | None
) -> None:
    http: dict[str, object] = {"listen": listen, **({"token": token} if token else {})}
    data = {
        "state_dir": "s",
        "accounts": [{"name": "a", "host": "h", "username": "u", "password": "p"}],
        "http": http,
    }
    if error is None:
        assert config_lib.parse(data, tmp_path / "c.yaml", SHIPPED_MODEL).http is not None
        return
    with pytest.raises(ConfigError, match=error) as raised:
        config_lib.parse(data, tmp_path / "c.yaml", SHIPPED_MODEL)
    assert "http." in str(raised.value)


# -- the daemon under a fake systemd, with the listener on ---------------------------


class Notifications:
    """A NOTIFY_SOCKET, as systemd provides it, collecting what spamd sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.received.extend(self.sock.recv(4096).decode().splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_daemon_notifies_systemd_serves_metrics_and_health_and_logs_no_secrets(
    mailbox: Box, tmp_path: Path
) -> None:
    body_marker = "The-quiet-heron-counts-seven-lanterns"
    config_file = daemon_config(
        tmp_path, [mailbox.settings()], http={"listen": "127.0.0.1:0", "token": TOKEN}
    )
    notes = Notifications(tmp_path / "notify.sock")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with daemon(config_file, NOTIFY_SOCKET=str(notes.path), WATCHDOG_USEC="1000000") as output:
            wait_until(lambda: "READY=1" in notes.received, what="READY=1")
            port = next(json.loads(line)["port"] for line in output if '"http_listening"' in line)
            status, _, health = request(port, "/healthz", None, **auth)
            assert status == 200
            account = json.loads(health)["accounts"][mailbox.user]
            assert account["connected"] is True and account["junk_folder"] == "Junk"

            mailbox.append(SPAM[0].read_bytes())
            ham = HAM[0].read_bytes().replace(b"\n\n", f"\n\n{body_marker}\n".encode(), 1)
            mailbox.append(ham)
            wait_until(lambda: mailbox.count("Junk") == 1 and '"message"' in "".join(output[-50:]))
            wait_until(lambda: "".join(output).count('"event": "message"') == 2)
            status, _, metrics = request(port, "/metrics", None, **auth)
            text = metrics.decode()
            user = mailbox.user
            assert (
                f'spamd_messages_total{{account="{user}",reason="score",verdict="spam"}} 1.0'
                in text
            )
            assert (
                f'spamd_messages_total{{account="{user}",reason="score",verdict="ham"}} 1.0' in text
            )
            assert f'spamd_moves_total{{account="{user}"}} 1.0' in text
            assert "spamd_classification_seconds_count 2.0" in text
            assert 'spamd_model_info{version="' in text
            _, _, stats = request(port, "/stats", None, **auth)
            assert json.loads(stats)["today"] == {"decisions": 2, "junked": 1}
            wait_until(lambda: "WATCHDOG=1" in notes.received, what="WATCHDOG=1")
            assert any(n.startswith("STATUS=1/1 accounts connected") for n in notes.received)
    finally:
        notes.close()
    assert "STOPPING=1" in notes.received
    everything = "".join(output)
    for secret in (mailbox.password, TOKEN, body_marker):
        assert secret not in everything


def test_check_config_connect_reports_each_account(mailbox: Box, tmp_path: Path) -> None:
    config_file = tmp_path / "spamd.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "accounts": [
                    mailbox.settings(),
                    mailbox.settings(name="wrong", password="not-the-password"),
                ],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "spamd.cli", "check-config", "--connect", "--config",
         str(config_file)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    good, *details, bad = done.stdout.splitlines()[1:]
    assert good.startswith(f"{mailbox.user}: connected to 127.0.0.1:")
    assert "  Junk folder: found 'Junk' (marked \\Junk (SPECIAL-USE))" in details
    assert "  IDLE: new mail is seen within a second" in details
    assert bad == (
        "wrong: FAILED: login refused: [AUTHENTICATIONFAILED] Authentication failed.; "
        "check the account's username and password (or token)"
    )
    assert "not-the-password" not in done.stdout + done.stderr
