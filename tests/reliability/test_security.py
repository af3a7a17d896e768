"""Hostile networks: downgrades and plain-text logins are refused; secrets stay secret.

The rest of the security promises are tested beside the code they guard:
certificates (tests/test_daemon.py::test_tls_is_verified_and_trusts_only_the_configured_ca),
model files (tests/test_model.py: world-writable or altered files are refused), the HTTP
token rule (tests/test_service.py) and secrets in the daemon's output (tests/test_service.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spamd.errors import SpamdError
from spamd.imap import Connection
from tests.conftest import Box, spamd_config
from tests.reliability.conftest import through
from tests.reliability.proxy import FaultProxy

SECRET = "hunter2-Zq8v"  # noqa: S105 - a test value, looked for in errors


def test_a_stripped_starttls_is_refused_before_any_login(
    mailbox: Box, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.strip = b" STARTTLS"  # a man in the middle hides it, hoping for a plain login
    settings = through(mailbox, proxy, tls="starttls", tls_verify=False, password=SECRET)
    with pytest.raises(SpamdError) as error:
        Connection.open(spamd_config(tmp_path, settings).accounts[0])
    assert "refusing to log in in plain text" in str(error.value)
    assert not [c for c in proxy.commands if b"LOGIN" in c.upper() or SECRET.encode() in c]


def test_without_an_explicit_tls_none_nothing_is_sent_in_plain_text(
    mailbox: Box, proxy: FaultProxy, tmp_path: Path
) -> None:
    settings = through(mailbox, proxy, password=SECRET)
    del settings["tls"]  # the default: implicit TLS, here against a plain-text port
    with pytest.raises(SpamdError):
        Connection.open(spamd_config(tmp_path, settings).accounts[0])
    assert all(SECRET.encode() not in c and b"LOGIN" not in c.upper() for c in proxy.commands)


def test_secrets_stay_out_of_errors(mailbox: Box, tmp_path: Path) -> None:
    wrong = mailbox.settings(password=SECRET)
    with pytest.raises(SpamdError) as refused:
        Connection.open(spamd_config(tmp_path, wrong).accounts[0])
    # A password command that fails and echoes the secret on stderr.
    failing = mailbox.settings(password=None, password_command=f"echo {SECRET} >&2; exit 3")
    with pytest.raises(SpamdError) as failed:
        Connection.open(spamd_config(tmp_path, failing).accounts[0])
    for error in (refused.value, failed.value):
        assert SECRET not in str(error) and SECRET not in repr(error)
    assert "exited with status 3" in str(failed.value)
