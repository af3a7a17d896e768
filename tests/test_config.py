"""Configuration: every validator rejects bad input with the file and key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spamd.errors import ConfigError
from spamd.ops import config as config_lib
from tests.conftest import example_config

MODEL = Path("models/default.joblib")


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "spamd.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def account(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": "alice",
        "host": "imap.example.org",
        "username": "alice",
        "password": "s3cret-pass",
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def load(tmp_path: Path, **top: object) -> config_lib.Config:
    data: dict[str, object] = {"state_dir": "state", "accounts": [account()]}
    data.update(top)
    return config_lib.load(write(tmp_path, data), MODEL)


def test_defaults_are_safe(tmp_path: Path) -> None:
    config = load(tmp_path)
    (alice,) = config.accounts
    assert (alice.port, alice.tls, alice.tls_verify) == (993, "ssl", True)
    assert alice.folders == ("INBOX",)
    assert alice.mode == "move" and alice.idle and not alice.scan_existing
    assert config.state_dir == tmp_path / "state"
    assert config.model_path == MODEL


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"tls": "tls"}, "accounts[0].tls", "must be one of ssl, starttls, none"),
        ({"port": "993x"}, "accounts[0].port", "expected a whole number"),
        ({"port": 70000}, "accounts[0].port", "between 1 and 65535"),
        ({"tls_verify": "yes"}, "accounts[0].tls_verify", "expected true or false"),
        ({"password": None}, "accounts[0].password", "missing password"),
        ({"password_env": "X"}, "accounts[0].password", "exactly one of"),
        ({"passwrod": "x"}, "accounts[0].passwrod", "did you mean 'password'"),
        ({"folders": []}, "accounts[0].folders", "at least one folder"),
        ({"folders": ["INBOX", "Junk"], "junk_folder": "Junk"}, "accounts[0].folders", "Junk"),
        ({"mode": "delete"}, "accounts[0].mode", "must be one of move, flag, dry_run"),
        ({"host": None}, "accounts[0].host", "missing (required)"),
        ({"poll_interval": 0}, "accounts[0].poll_interval", ">= 1"),
        ({"password_file": "nope.txt", "password": None}, "accounts[0].password_file", "not found"),
        ({"ca_file": "nope.pem"}, "accounts[0].ca_file", "not found"),
        ({"auth": "oauth"}, "accounts[0].auth", "must be one of password, xoauth2, oauthbearer"),
        ({"auth": "xoauth2"}, "accounts[0].password", "only used with auth: password"),
        (
            {"oauth2_token_command": "oama access a@x"},
            "accounts[0].oauth2_token_command",
            "only used with auth: xoauth2 or oauthbearer",
        ),
        ({"auth": "xoauth2", "password": None}, "accounts[0].oauth2_token", "missing oauth2_token"),
    ],
)
def test_account_errors_name_the_key(
    tmp_path: Path, changes: dict[str, object], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, accounts=[account(**changes)])
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'spamd.yaml'}:{key}:"), text
    assert message in text
    assert "s3cret-pass" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("state_dir: [unclosed", "line 1"),
        ("- a list", "expected a mapping"),
        ("state_dir: s\naccounts: []\n", "one or more entries"),
        ("state_dir: s\nacounts: []\n", "accounts: missing"),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_lib.load(write(tmp_path, text), MODEL)


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"stat_dir: unknown key \(did you mean 'state_dir'\?\)"):
        load(tmp_path, stat_dir="x")


def test_missing_file_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        config_lib.load(tmp_path / "nope.yaml", MODEL)
    with pytest.raises(ConfigError, match="'alice' is used twice"):
        load(tmp_path, accounts=[account(), account()])


def test_secrets_are_read_at_login_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    monkeypatch.setenv("SPAMD_TEST_PW", "from-env")
    accounts = [
        account(name="a"),
        account(name="b", password=None, password_file="pw"),
        account(name="c", password=None, password_env="SPAMD_TEST_PW"),
        account(name="d", password=None, password_command="echo from-command"),
        account(name="e", password=None, password_command="exit 3"),
    ]
    config = load(tmp_path, accounts=accounts)
    revealed = [a.password.reveal() for a in config.accounts[:4]]
    assert revealed == ["s3cret-pass", "from-file", "from-env", "from-command"]
    assert "s3cret-pass" not in repr(config)
    with pytest.raises(ConfigError, match=r"accounts\[4\]\.password_command: command exited"):
        config.accounts[4].password.reveal()
    with pytest.raises(ConfigError, match="no account named 'alcie'"):
        config.account("alcie")


def test_example_config_documents_every_option() -> None:
    example = Path(__file__).resolve().parent.parent / "config.example.yaml"
    text = example.read_text()
    for section, keys in config_lib.KNOWN_KEYS.items():
        for key in keys:
            assert f"{key}:" in text, f"config.example.yaml does not mention {section}.{key}"
    loaded = config_lib.parse(yaml.safe_load(text), example, MODEL)
    assert loaded.accounts[0].name == "alice"
    assert loaded.accounts[0].tls == "ssl"


def test_check_config_passes_on_the_example_once_the_files_it_names_exist(
    tmp_path: Path,
) -> None:
    config = example_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "spamd.cli", "check-config", "--config", str(config)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{config}: OK (1 accounts, 1 folders, model ")
    assert "secret" not in done.stdout + done.stderr
    assert not (tmp_path / "state").exists()  # checked, not created
