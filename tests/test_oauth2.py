"""OAuth2 logins (SASL XOAUTH2 and OAUTHBEARER) against a real Dovecot.

Dovecot checks each access token by RFC 7662 introspection, here against a
small token server of the test's own on loopback: it knows which tokens are
valid, as Google's or Microsoft's would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from spamd.errors import AuthError
from spamd.mail.imap import Connection
from tests import sandbox
from tests.conftest import spamd_config

USER = "oauth-user"


class TokenServer:
    """Answers Dovecot's introspection requests: `valid` tokens are active for USER."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.asked: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                token = form.get("token", [""])[0]
                server.asked.append(token)
                active = token in server.valid
                body = json.dumps(
                    {"active": active, "username": USER} if active else {"active": False}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/introspect"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def tokens() -> Iterator[tuple[TokenServer, sandbox.Dovecot]]:
    server = TokenServer()
    with sandbox.running({USER: "unused-password"}, oauth2_introspection=server.url) as dovecot:
        yield server, dovecot
    server.http.shutdown()
    server.http.server_close()


def account(dovecot: sandbox.Dovecot, tmp_path: Path, auth: str, command: str) -> object:
    entry = {
        "name": "o", "host": "127.0.0.1", "port": dovecot.imap_port, "tls": "none",
        "username": USER, "auth": auth, "oauth2_token_command": command,
    }  # fmt: skip
    return spamd_config(tmp_path, entry).accounts[0]


@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_a_token_from_the_command_logs_in(
    tokens: tuple[TokenServer, sandbox.Dovecot], tmp_path: Path, auth: str
) -> None:
    server, dovecot = tokens
    server.valid = {f"token-{auth}"}
    connection = Connection.open(account(dovecot, tmp_path, auth, f"echo token-{auth}"))  # type: ignore[arg-type]
    try:
        assert connection.find_junk().name == "Junk"
    finally:
        connection.logout()
    assert server.asked[-1] == f"token-{auth}"


def test_a_rejected_token_is_asked_for_once_more(
    tokens: tuple[TokenServer, sandbox.Dovecot], tmp_path: Path
) -> None:
    server, dovecot = tokens
    server.valid = {"fresh"}
    runs = tmp_path / "runs"
    # A helper that hands out a stale token first, then a refreshed one.
    script = tmp_path / "token.sh"
    script.write_text(
        f'#!/bin/sh\necho x >> {runs}\n[ "$(wc -l < {runs})" -gt 1 ] && echo fresh || echo stale\n'
    )
    script.chmod(0o755)
    connection = Connection.open(account(dovecot, tmp_path, "xoauth2", str(script)))  # type: ignore[arg-type]
    connection.logout()
    assert runs.read_text().count("x") == 2
    assert server.asked[-2:] == ["stale", "fresh"]


def test_a_token_rejected_twice_is_an_auth_error_without_the_token(
    tokens: tuple[TokenServer, sandbox.Dovecot], tmp_path: Path
) -> None:
    server, dovecot = tokens
    server.valid = set()
    with pytest.raises(AuthError) as error:
        Connection.open(account(dovecot, tmp_path, "oauthbearer", "echo secret-token-123"))  # type: ignore[arg-type]
    assert "login refused" in str(error.value)
    assert "secret-token-123" not in str(error.value)
    assert server.asked[-2:] == ["secret-token-123", "secret-token-123"]
