"""Hostile networks: downgrades and plain-text logins are refused; secrets stay secret.

The rest of the security promises are tested beside the code they guard:
certificates (tests/test_daemon.py::test_tls_is_verified_and_trusts_only_the_configured_ca),
model files (tests/test_model.py: world-writable or altered files are refused), the HTTP
token rule (tests/test_service.py) and secrets in the daemon's output (tests/test_service.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imapclient
import pytest
import yaml

from spamd import sandbox
from spamd.errors import AuthError, SpamdError
from spamd.imap import Connection
from tests.conftest import ROOT, Box, new_box, running_service, spamd_config, wait_until
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


def test_a_non_ascii_password_logs_in_with_check_config_and_run(
    dovecot: sandbox.Dovecot, tmp_path: Path
) -> None:
    password = "Pässwörd-€-日本"  # noqa: S105 - a test value
    box = new_box(dovecot, "umlaut", tmp_path)
    box.password = password
    dovecot.set_users({**dovecot.users, box.user: password})
    box.close()
    wait_until(lambda: can_log_in_with_plain(box), timeout=5, what="the new password")
    config_file = tmp_path / "spamd.yaml"
    settings = box.settings()
    config_file.write_text(
        yaml.safe_dump({"state_dir": str(tmp_path / "state"), "accounts": [settings]}),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "spamd.cli", "check-config", "--connect", "--config",
         str(config_file)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{box.user}: connected to 127.0.0.1:" in done.stdout
    with running_service(spamd_config(tmp_path, settings)) as (service, events):
        wait_until(service.all_started)
        assert service.health()[0], events.named("connection_failed")
    with pytest.raises(AuthError):  # and a wrong one is a refused login, not a crash
        Connection.open(spamd_config(tmp_path, box.settings(password="Fälsch")).accounts[0])


def can_log_in_with_plain(box: Box) -> bool:
    client = imapclient.IMAPClient("127.0.0.1", box.server.imap_port, ssl=False)
    try:
        client.plain_login(box.user, box.password)
    except imapclient.exceptions.LoginError:
        return False
    finally:
        client.shutdown()
    return True
