"""What an admin expects of a daemon: exit codes, default paths, `python -m spamd`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spamd import config as config_lib
from spamd.cli import DEFAULT_CONFIG, EX_CONFIG, main
from spamd.errors import ConfigError
from tests.conftest import ROOT, SHIPPED_MODEL


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
