"""Setup problems named as such; `check-config --connect` reports and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spamd.daemon.watcher import SETUP_RETRY
from spamd.errors import SetupError
from spamd.mail.imap import Connection
from tests.conftest import ROOT, SHIPPED_MODEL, Box, running_service, spamd_config, wait_until
from tests.sandbox import LAYOUTS, Dovecot, Layout, running

INBOX_PREFIX = next(layout for layout in LAYOUTS if layout.prefix)


def folders(box: Box) -> list[str]:
    return sorted(str(name) for _, _, name in box.client.list_folders())


def check_config(tmp_path: Path, *accounts: dict[str, object]) -> subprocess.CompletedProcess[str]:
    config_file = tmp_path / "spamd.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "model": {"path": str(SHIPPED_MODEL)},
                "accounts": list(accounts),
            }
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "spamd.cli", "check-config", "--connect", "--config",
         str(config_file)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip


def test_check_config_connect_changes_nothing_and_reports_missing_folders(
    mailbox: Box, tmp_path: Path
) -> None:
    before = folders(mailbox)
    done = check_config(
        tmp_path,
        mailbox.settings(folders=["INBOX", "NoSuchFolder"], junk_folder="Quarantine"),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "Junk folder: would be created as 'Quarantine' (configured (junk_folder))" in out
    assert "watched folder 'INBOX': found as 'INBOX'" in out
    assert "watched folder 'NoSuchFolder': MISSING: fix folders:" in out
    assert "MOVE: spam is moved to Junk in one atomic command" in out
    assert folders(mailbox) == before  # read-only: no Quarantine made
    good = check_config(tmp_path, mailbox.settings())
    assert good.returncode == 0, good.stdout
    assert "Junk folder: found 'Junk' (marked \\Junk (SPECIAL-USE))" in good.stdout


@pytest.mark.parametrize(
    ("layout", "says"),
    [
        (Layout("bare", hide=("MOVE", "UIDPLUS")), "WARNING: this server cannot move mail safely"),
        (INBOX_PREFIX, "namespace 'INBOX.', separator '.'"),
    ],
    ids=["no-move-no-uidplus", "inbox-prefix"],
)
def test_check_config_connect_explains_each_server(
    tmp_path: Path, layout: Layout, says: str
) -> None:
    with running({"u": "p"}, layout) as server:
        box = Box(server, "u", "p", tmp_path)
        done = check_config(tmp_path, box.settings())
        box.close()
    assert says in done.stdout
    assert f"Junk folder: found {layout.junk!r}" in done.stdout
    assert done.returncode == 0  # a warning, not a stop: spam is flagged there


def test_junk_is_created_inside_the_namespace_where_there_is_none(tmp_path: Path) -> None:
    # Debian's stock Cyrus, Courier: CREATE of a top-level "Junk" is refused there.
    layout = Layout("inbox-prefix-no-junk", prefix="INBOX.", separator=".", special_use=False,
                    folders=("Trash",), hide=("SPECIAL-USE",))  # fmt: skip
    with running({"u": "p"}, layout) as server:
        box = Box(server, "u", "p", tmp_path)
        connection = Connection.open(spamd_config(tmp_path, box.settings()).accounts[0])
        junk = connection.find_junk()
        connection.logout()
        assert (junk.name, junk.how) == ("INBOX.Junk", junk.how)
        assert "created" in junk.how
        assert folders(box) == ["INBOX", "INBOX.Junk", "INBOX.Trash"]
        box.close()


def setup_failure(server: Dovecot, tmp_path: Path, **settings: object) -> tuple[str, str, str]:
    """(the error, the fix, systemd's STATUS=) of a daemon that cannot work with these settings."""
    box = Box(server, "u", "p", tmp_path)
    config = spamd_config(tmp_path, box.settings(**settings))
    with running_service(config) as (service, events):
        wait_until(lambda: events.named("setup_error"), what="the setup error")
        event = events.named("setup_error")[0]  # each watcher of the account says it once
        assert event["retry_in"] >= 0.9 * SETUP_RETRY  # type: ignore[operator]
        assert not events.named("connection_failed")  # not network trouble
        healthy, details = service.health()
        assert not healthy
        account = details["accounts"]["u"]
        assert account["setup_error"] == event["error"]
        status = service.summary()
    box.close()
    return str(event["error"]), str(event["fix"]), status


@pytest.fixture(scope="module")
def server() -> object:
    with running({"u": "p"}) as started:
        yield started


def test_a_missing_watched_folder_is_a_setup_error(server: Dovecot, tmp_path: Path) -> None:
    error, fix, status = setup_failure(server, tmp_path, folders=["INBOX", "NoSuchFolder"])
    assert "folder 'NoSuchFolder' not found" in error
    assert fix == "fix folders: (the server has: Drafts, INBOX, Junk, Sent, Trash)"
    assert "SETUP ERROR u: u: folder 'NoSuchFolder' not found" in status


def test_a_refused_create_of_junk_is_a_setup_error(server: Dovecot, tmp_path: Path) -> None:
    error, fix, status = setup_failure(server, tmp_path, junk_folder="~Spam")
    assert "refused to create the Junk folder '~Spam'" in error
    assert "set junk_folder:" in fix
    assert "SETUP ERROR" in status


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"tls": "ssl"}, "speaks plain IMAP: set tls: starttls"),
        ({"tls": "none", "imaps": True, "timeout": 1}, "expects TLS at once: set tls: ssl"),
        ({"host": "no-such-host.invalid"}, r"does not resolve \(DNS"),
    ],
    ids=["ssl-on-plain-port", "plain-on-tls-port", "unknown-host"],
)
def test_tls_mode_and_dns_failures_say_what_they_are(
    server: Dovecot, tmp_path: Path, settings: dict[str, object], says: str
) -> None:
    box = Box(server, "u", "p", tmp_path)
    if settings.pop("imaps", False):
        settings["port"] = server.imaps_port
    account = spamd_config(tmp_path, box.settings(**settings)).accounts[0]
    with pytest.raises(SetupError, match=says):
        Connection.open(account)
