"""What an admin expects of a daemon: exit codes, default paths, `python -m spamd`, a
watchdog that notices a dead watcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spamd.cli import DEFAULT_CONFIG, EX_CONFIG, main
from spamd.errors import ConfigError
from spamd.ops import config as config_lib
from tests.conftest import HAM, ROOT, SHIPPED_MODEL, Box, wait_until
from tests.test_service import Notifications


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_config(path: Path, **top: object) -> Path:
    data: dict[str, object] = {
        "accounts": [{"name": "a", "host": "127.0.0.1", "username": "a", "password": "p"}],
        **top,
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("command", ["run", "check-config", "scan --account a", "model list"])
def test_a_configuration_error_exits_78_so_systemd_does_not_restart(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_config(tmp_path / "spamd.yaml", state_dir="s", stat_dir="typo")
    code, _, err = run(capsys, *command.split(), "--config", str(bad))
    assert code == EX_CONFIG == 78
    assert err.count("\n") == 1 and "stat_dir: unknown key" in err


def test_a_model_that_cannot_be_loaded_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "spamd.yaml", state_dir="s", model={"path": "none.joblib"})
    code, _, err = run(capsys, "check-config", "--config", str(config))
    assert code == 78 and "none" in err


def test_the_configuration_defaults_to_spamd_config_then_etc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "elsewhere.yaml", state_dir="s")
    monkeypatch.setenv("SPAMD_MODEL", str(SHIPPED_MODEL))
    monkeypatch.setenv("SPAMD_CONFIG", str(config))
    code, out, _ = run(capsys, "check-config")
    assert code == 0 and out.startswith(f"{config}: OK")
    monkeypatch.delenv("SPAMD_CONFIG")
    if DEFAULT_CONFIG.exists():
        pytest.skip(f"{DEFAULT_CONFIG} exists on this machine")
    code, _, err = run(capsys, "check-config")
    assert code == 78 and err == f"spamd: error: {DEFAULT_CONFIG}: configuration file not found\n"


def test_state_dir_defaults_to_systemds_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "spamd.yaml")
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="state_dir: missing"):
        config_lib.load(config, SHIPPED_MODEL)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/spamd:/var/lib/other")
    assert config_lib.load(config, SHIPPED_MODEL).state_dir == Path("/var/lib/spamd")
    write_config(config, state_dir="mine")  # an explicit state_dir wins
    assert config_lib.load(config, SHIPPED_MODEL).state_dir == tmp_path / "mine"


def test_a_secret_file_is_read_from_systemds_credentials_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.password").write_text("beside-the-config\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "a.password").write_text("from-credential\n")
    account = {"name": "a", "host": "h", "username": "a", "password_file": "a.password"}
    config = write_config(tmp_path / "spamd.yaml", state_dir="s", accounts=[account])
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert config_lib.load(config, SHIPPED_MODEL).accounts[0].password.reveal() == (
        "beside-the-config"
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert config_lib.load(config, SHIPPED_MODEL).accounts[0].password.reveal() == (
        "from-credential"
    )


def test_python_dash_m_spamd_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spamd", "--version"], capture_output=True, text=True, cwd=ROOT,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("spamd ")


WATCHER_DIES = """
import sys
from spamd import cli
from spamd.daemon import service, watcher

first_sync = watcher.FolderWatcher.sync

def die_on_the_second_sync(self, mailbox, junk):
    if getattr(self, "synced", False):
        raise SystemExit  # the thread ends, as after an error its loop cannot catch
    first_sync(self, mailbox, junk)
    self.synced = True

watcher.FolderWatcher.sync = die_on_the_second_sync  # the INBOX watcher's, not Junk's
service.STATUS_INTERVAL = 0.0  # a STATUS= every turn of the main loop
sys.exit(cli.main(sys.argv[1:]))
"""


def test_the_watchdog_is_fed_only_while_every_watcher_thread_is_alive(
    mailbox: Box, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "spamd.yaml",
        state_dir=str(tmp_path / "state"),
        model={"path": str(SHIPPED_MODEL)},
        accounts=[mailbox.settings()],
    )
    notes = Notifications(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notes.path), "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WATCHER_DIES, "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: "READY=1" in notes.received, what="READY=1")
        assert "WATCHDOG=1" in notes.received
        mailbox.append(HAM[0].read_bytes())  # news: the INBOX watcher syncs again, and dies

        def status_since_last_ping() -> int:
            received = list(notes.received)
            last = max(i for i, n in enumerate(received) if n == "WATCHDOG=1")
            return sum(n.startswith("STATUS=") for n in received[last:])

        wait_until(lambda: status_since_last_ping() >= 20, what="the main loop without pings")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
        notes.close()
    died = [json.loads(line) for line in output.splitlines() if '"watcher_died"' in line]
    assert len(died) == 1 and died[0]["level"] == "error"
    assert died[0]["threads"] == [f"{mailbox.user}/INBOX"]
