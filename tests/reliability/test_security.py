"""Hostile networks: downgrades and plain-text logins are refused; secrets stay secret.

The rest of the security promises are tested beside the code they guard:
certificates (tests/test_daemon.py::test_tls_is_verified_and_trusts_only_the_configured_ca),
model files (tests/test_model.py: world-writable or altered files are refused), the HTTP
token rule (tests/test_service.py) and secrets in the daemon's output (tests/test_service.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import imapclient
import pytest
import yaml

from spamd.core import scorer as scorer_lib
from spamd.daemon.service import LiveModel, Service
from spamd.errors import AuthError, ModelError, SpamdError
from spamd.mail.imap import Connection
from spamd.store.state import FILE_NAME, FolderMark, State
from tests import sandbox
from tests.conftest import (
    ROOT,
    SHIPPED_MODEL,
    Box,
    Events,
    new_box,
    running_service,
    spamd_config,
    wait_until,
)
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


# -- files: the state is private, model files are trusted only from root or spamd itself ----


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_state_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    state_dir = tmp_path / "state"
    old = os.umask(umask)
    try:
        state = State(state_dir / FILE_NAME)
        state.set_mark("a", "INBOX", FolderMark(1, 5))  # a write: the WAL and SHM files exist
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in state_dir.iterdir()}
        state.close()
        state_dir.chmod(0o755)  # made readable by someone: opening it again makes it private
        State(state_dir / FILE_NAME).close()
    finally:
        os.umask(old)
    assert modes == dict.fromkeys((FILE_NAME, f"{FILE_NAME}-shm", f"{FILE_NAME}-wal"), 0o600)
    assert stat.S_IMODE((state_dir / FILE_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_state_directory_of_another_user_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"  # an administrator's choice: theirs, group-readable
    shared.mkdir(mode=0o750)
    nobody = pwd.getpwnam("nobody")
    os.chown(shared, nobody.pw_uid, nobody.pw_gid)
    State(shared / FILE_NAME).close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750
    assert stat.S_IMODE((shared / FILE_NAME).stat().st_mode) == 0o600  # ours: private


def model_copy(directory: Path) -> Path:
    for suffix in (".npz", ".json"):
        shutil.copy(SHIPPED_MODEL.with_suffix(suffix), directory / f"m{suffix}")
    return directory / "m.joblib"


@pytest.mark.parametrize(
    ("mode", "error"),
    [(0o664, "refusing a group-writable model weights file"), (0o646, "world-writable")],
)
def test_model_files_others_can_write_are_refused(tmp_path: Path, mode: int, error: str) -> None:
    model = model_copy(tmp_path)
    scorer_lib.load(model)  # as copied: fine
    scorer_lib.weights_path(model).chmod(mode)
    with pytest.raises(ModelError, match=error) as refused:
        scorer_lib.load(model)
    assert "m.npz" in str(refused.value) and "chmod go-w" in str(refused.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_model_files_owned_by_another_user_are_refused(tmp_path: Path) -> None:
    model = model_copy(tmp_path)
    nobody = pwd.getpwnam("nobody")
    os.chown(scorer_lib.metadata_path(model), nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ModelError, match=f"owned by uid {nobody.pw_uid}, neither root"):
        scorer_lib.load(model)


# -- the retrain process: no code from the working directory --------------------------------

PLANTED = """\
import pathlib, sys
pathlib.Path(sys.argv[0]).parent.parent.joinpath("PLANTED-RAN").write_text("ran")
print('{"error": "the planted module ran"}')
"""


def test_retrain_runs_no_code_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"  # a world-writable directory someone starts spamd from
    (shared / "spamd" / "training").mkdir(parents=True)
    shared.chmod(0o1777)
    (shared / "spamd" / "__init__.py").write_text("")
    (shared / "spamd" / "training" / "__init__.py").write_text("")
    (shared / "spamd" / "training" / "retrain.py").write_text(PLANTED)
    monkeypatch.chdir(shared)
    monkeypatch.setenv("PYTHONPATH", str(shared))
    account: dict[str, object] = {
        "name": "a",
        "host": "127.0.0.1",
        "username": "u",
        "password": "p",
    }
    config = spamd_config(tmp_path, account, model={"path": str(tmp_path / "missing.joblib")})
    events = Events()
    service = Service(config, log=Events.logger(events), model=LiveModel(SHIPPED_MODEL, events))
    try:
        service.retrain()
    finally:
        service.state.close()
    assert not (shared / "PLANTED-RAN").exists()
    (failed,) = events.named(
        "retrain_failed"
    )  # the real spamd.training.retrain: no such base model
    assert "missing.joblib" in str(failed["error"]), failed
