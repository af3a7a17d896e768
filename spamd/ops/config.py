"""The YAML configuration, validated once into frozen objects.

Every problem is reported as one `ConfigError` naming the file and the key path
(``accounts[1].tls``), with a "did you mean" for misspelt keys. Secrets are
kept as `Secret` objects whose repr never shows the value; a password file,
variable or command is read when spamd logs in, so it can rotate.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import pwd
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from spamd.errors import ConfigError

TlsMode = Literal["ssl", "starttls", "none"]
Mode = Literal["move", "flag", "dry_run"]
TLS_MODES: tuple[TlsMode, ...] = ("ssl", "starttls", "none")
Auth = Literal["password", "xoauth2", "oauthbearer"]
AUTHS: tuple[Auth, ...] = ("password", "xoauth2", "oauthbearer")
MODES: tuple[Mode, ...] = ("move", "flag", "dry_run")
Unreadable = Literal["keep", "flag"]
UNREADABLE: tuple[Unreadable, ...] = ("keep", "flag")
DEFAULT_FETCH_BYTES = 256 * 1024
DEFAULT_POLL_SECONDS = 60.0
SECRET_COMMAND_TIMEOUT = 30.0
DEFAULT_HTTP_PORT = 8025
# Corrections made together (a user sweeping Junk) usually come within a second of each
# other; one more during a retrain causes one more retrain after it.
DEFAULT_RETRAIN_DELAY = 1.0
DEFAULT_RESCUE_WINDOW = 120.0  # identity.RESCUE_WINDOW (config imports nothing of the core)


RUN_IT_YOURSELF = "run it as the user spamd runs as to see why"


@dataclass(frozen=True, slots=True)
class Secret:
    """Where a password comes from. `reveal()` reads it; repr and str never show it."""

    kind: Literal["value", "file", "env", "command"]
    where: str  # the value itself for "value"; a path, variable name or command otherwise
    origin: str  # "config.yaml:accounts[0].password_file", for errors

    def reveal(self) -> str:
        if self.kind == "value":
            return self.where
        if self.kind == "file":
            try:
                return Path(self.where).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {self.where} ({exc.strerror})", source=self.origin
                ) from None
        if self.kind == "env":
            value = os.environ.get(self.where)
            if value is None:
                raise ConfigError(
                    f"environment variable {self.where} is not set", source=self.origin
                )
            return value
        try:
            done = subprocess.run(  # noqa: S602 - the admin's own command, like mbsync's PassCmd
                self.where,
                shell=True,
                capture_output=True,
                text=True,
                timeout=SECRET_COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"command timed out after {SECRET_COMMAND_TIMEOUT:.0f} s; {RUN_IT_YOURSELF}",
                source=self.origin,
            ) from None
        if done.returncode != 0:
            # Its stderr may echo the secret: say only how it ended.
            raise ConfigError(
                f"command exited with status {done.returncode}; {RUN_IT_YOURSELF}",
                source=self.origin,
            )
        if not done.stdout.strip():
            raise ConfigError(
                "command printed nothing: it must print the secret on standard output",
                source=self.origin,
            )
        return done.stdout.strip()

    def check(self) -> None:
        """Read the secret once, as a login would, without showing it (`check-config`)."""
        if not self.reveal():
            raise ConfigError("is empty", source=self.origin)

    def __repr__(self) -> str:
        shown = "***" if self.kind == "value" else self.where
        return f"Secret({self.kind}={shown})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    host: str
    username: str
    password: Secret  # the password, or with an OAuth2 `auth` the access token's source
    port: int = 993
    tls: TlsMode = "ssl"
    tls_verify: bool = True
    ca_file: Path | None = None
    folders: tuple[str, ...] = ("INBOX",)
    junk_folder: str | None = None  # None: the \Junk special-use folder, else "Junk"
    mode: Mode = "move"
    idle: bool = True
    poll_interval: float = DEFAULT_POLL_SECONDS
    scan_existing: bool = False
    fetch_bytes: int = DEFAULT_FETCH_BYTES
    set_keywords: bool = False
    calibrate: bool = True  # own threshold and personal layer from the account's own mail
    unreadable: Unreadable = "keep"  # a message that cannot be read: left alone, or flagged
    allow: tuple[str, ...] = ()  # sender addresses or domains never junked
    block: tuple[str, ...] = ()  # sender addresses or domains always junked
    timeout: float = 60.0  # seconds for connecting and for each command
    auth: Auth = "password"  # or SASL XOAUTH2 / OAUTHBEARER with a token from `password`


@dataclass(frozen=True, slots=True)
class Http:
    host: str
    port: int
    token: Secret | None  # bearer token; required unless bound to loopback
    cors_origin: str | None = None
    max_request_bytes: int = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    state_dir: Path
    model_path: Path
    accounts: tuple[Account, ...]
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    housekeeping_interval: float = 300.0
    learning: bool = True  # learn from users' corrections and retrain
    retrain_delay: float = DEFAULT_RETRAIN_DELAY  # quiet seconds after a correction, then retrain
    rescue_window: float = DEFAULT_RESCUE_WINDOW  # see identity.RESCUE_WINDOW
    http: Http | None = None  # the status/metrics/classify listener; off when None

    def secrets(self) -> list[Secret]:
        """Every password and token the configuration names."""
        token = [self.http.token] if self.http and self.http.token else []
        return [*(a.password for a in self.accounts), *token]

    def account(self, name: str) -> Account:
        for account in self.accounts:
            if account.name == name:
                return account
        names = [a.name for a in self.accounts]
        raise ConfigError(
            f"no account named {name!r}{_did_you_mean(name, names)}", source=str(self.source)
        )


def load(path: Path, default_model: Path) -> Config:
    """Read and validate a configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("configuration file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read ({exc})", source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: {problem}", source=str(path)) from None
    return parse(data, path, default_model)


def parse(data: object, source: Path, default_model: Path) -> Config:
    root = _Section(data, str(source), "")
    base = source.resolve().parent
    # Under systemd, StateDirectory= passes the directory in $STATE_DIRECTORY
    # (colon-separated when there are several: the first is ours).
    systemd_state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    state_dir = base / root.string("state_dir", systemd_state or None)
    model = root.section("model", required=False)
    model_path = base / model.string("path", str(default_model)) if model else default_model
    if model:
        model.done()
    log = root.section("log", required=False)
    level = log.choice("level", ("debug", "info", "warning", "error"), "info") if log else "info"
    fmt = log.choice("format", ("auto", "json", "console"), "auto") if log else "auto"
    if log:
        log.done()
    housekeeping = root.number("housekeeping_interval", 300.0, minimum=1.0)
    learn = root.section("learning", required=False)
    learning = learn.boolean("enabled", default=True) if learn else True
    retrain_delay = (
        learn.number("retrain_delay", DEFAULT_RETRAIN_DELAY, minimum=0.0)
        if learn
        else DEFAULT_RETRAIN_DELAY
    )
    rescue_window = (
        learn.number("rescue_window", DEFAULT_RESCUE_WINDOW, minimum=1.0)
        if learn
        else DEFAULT_RESCUE_WINDOW
    )
    if learn:
        learn.done()
    web = root.section("http", required=False)
    http = _http(web, base) if web else None
    accounts = tuple(_account(s, base) for s in root.sections("accounts"))
    names = [a.name for a in accounts]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"account name {name!r} is used twice", source=root.source, key="accounts"
            )
    root.done()
    return Config(
        source=source,
        state_dir=state_dir,
        model_path=model_path,
        accounts=accounts,
        log_level=level,
        log_format=cast(Literal["auto", "json", "console"], fmt),
        housekeeping_interval=housekeeping,
        learning=learning,
        retrain_delay=retrain_delay,
        rescue_window=rescue_window,
        http=http,
    )


def _account(s: _Section, base: Path) -> Account:
    name = s.string("name")
    auth = cast(Auth, s.choice("auth", AUTHS, "password"))
    tls = cast(TlsMode, s.choice("tls", TLS_MODES, "ssl"))
    port = s.integer("port", 993 if tls == "ssl" else 143, minimum=1, maximum=65535)
    ca_file = s.string("ca_file", "")
    if ca_file and not (base / ca_file).is_file():
        raise ConfigError(
            f"file not found: {base / ca_file}", source=s.source, key=s.key("ca_file")
        )
    folders = tuple(s.strings("folders", ["INBOX"]))
    if not folders:
        raise ConfigError(
            "list at least one folder to watch", source=s.source, key=s.key("folders")
        )
    junk = s.string("junk_folder", "") or None
    if junk and junk in folders:
        raise ConfigError(
            f"the Junk folder {junk!r} cannot also be watched for new mail",
            source=s.source,
            key=s.key("folders"),
        )
    account = Account(
        name=name,
        host=s.string("host"),
        port=port,
        tls=tls,
        tls_verify=s.boolean("tls_verify", default=True),
        ca_file=base / ca_file if ca_file else None,
        username=s.string("username"),
        password=_credential(s, base, auth),
        auth=auth,
        folders=folders,
        junk_folder=junk,
        mode=cast(Mode, s.choice("mode", MODES, "move")),
        idle=s.boolean("idle", default=True),
        poll_interval=s.number("poll_interval", DEFAULT_POLL_SECONDS, minimum=1.0),
        scan_existing=s.boolean("scan_existing", default=False),
        fetch_bytes=s.integer("fetch_bytes", DEFAULT_FETCH_BYTES, minimum=1024),
        set_keywords=s.boolean("set_keywords", default=False),
        calibrate=s.boolean("calibrate", default=True),
        unreadable=cast(Unreadable, s.choice("unreadable", UNREADABLE, "keep")),
        allow=tuple(x.lower() for x in s.strings("allow", [])),
        block=tuple(x.lower() for x in s.strings("block", [])),
        timeout=s.number("timeout", 60.0, minimum=1.0),
    )
    s.done()
    return account


def _credential(s: _Section, base: Path, auth: Auth) -> Secret:
    """The password, or for OAuth2 the access token (usually `oauth2_token_command`)."""
    name, other = (
        ("password", "oauth2_token") if auth == "password" else ("oauth2_token", "password")
    )
    stray = [
        key
        for key, value in s.data.items()
        if (key == other or key.startswith(f"{other}_")) and value is not None
    ]
    if stray:
        needs = "auth: xoauth2 or oauthbearer" if auth == "password" else "auth: password"
        raise ConfigError(
            f"{stray[0]} is only used with {needs}", source=s.source, key=s.key(stray[0])
        )
    return cast(Secret, _secret(s, base, name))


def _secret(
    s: _Section, base: Path, name: str = "password", *, required: bool = True
) -> Secret | None:
    """A secret given as NAME, NAME_file, NAME_env or NAME_command (exactly one)."""
    kinds = {
        name: "value",
        f"{name}_file": "file",
        f"{name}_env": "env",
        f"{name}_command": "command",
    }
    given = [key for key in kinds if s.data.get(key) is not None]
    if not given and not required:
        return None
    if len(given) != 1:
        problem = "set exactly one of" if given else f"missing {name}: set one of"
        raise ConfigError(f"{problem} {', '.join(kinds)}", source=s.source, key=s.key(name))
    key = given[0]
    value = s.string(key)
    origin = f"{s.source}:{s.key(key)}"
    if key.endswith("_file"):
        path = _systemd_credential(value) or base / value
        if not path.is_file():
            raise ConfigError(f"file not found: {path}", source=s.source, key=s.key(key))
        value = str(path)
    if key.endswith("_env") and value not in os.environ:
        raise ConfigError(
            f"environment variable {value} is not set", source=s.source, key=s.key(key)
        )
    return Secret(cast(Literal["value", "file", "env", "command"], kinds[key]), value, origin)


def _systemd_credential(name: str) -> Path | None:
    """A secret file systemd passed in (`LoadCredential=NAME:PATH`): a relative `*_file`
    is looked up in $CREDENTIALS_DIRECTORY first, so the service's own user can read
    it while the file in /etc stays root's."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory or Path(name).name != name:
        return None
    path = Path(directory) / name
    return path if path.is_file() else None


def _http(s: _Section, base: Path) -> Http:
    listen = s.string("listen", f"127.0.0.1:{DEFAULT_HTTP_PORT}")
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(
            f"expected HOST:PORT, got {listen!r}", source=s.source, key=s.key("listen")
        )
    token = _secret(s, base, "token", required=False)
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"a bearer token is required when listening on {host} (not loopback): "
            "set token, token_file, token_env or token_command",
            source=s.source,
            key=s.key("token"),
        )
    http = Http(
        host=host,
        port=int(port_text),
        token=token,
        cors_origin=s.string("cors_origin", "") or None,
        max_request_bytes=s.integer("max_request_bytes", 5 * 1024 * 1024, minimum=1024),
    )
    s.done()
    return http


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_state_dir(config: Config) -> None:
    """A ConfigError unless spamd can keep its state in `state_dir` (creating it if need be)."""
    path = config.state_dir
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = ""
    if not existing.is_dir():
        problem = f"{existing} is not a directory"
    elif not os.access(existing, os.R_OK | os.W_OK | os.X_OK):
        problem = f"{existing} is not readable and writable for {_user()}"
    elif existing == path and (
        unusable := sorted(
            f for f in path.iterdir() if f.is_file() and not os.access(f, os.R_OK | os.W_OK)
        )
    ):
        problem = f"{unusable[0]} is not readable and writable for {_user()}"
    if problem:
        raise ConfigError(
            f"{path} cannot hold spamd's state: {problem}; "
            "point state_dir at a directory spamd's user may write to, or fix its owner and mode",
            source=str(config.source),
            key="state_dir",
        )


def _user() -> str:
    try:
        return f"user {pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"uid {os.geteuid()}"


# Keys each section accepts, for "unknown key" errors with suggestions.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("state_dir", "model", "log", "accounts", "housekeeping_interval", "learning", "http"),
    "http": (
        "listen", "token", "token_file", "token_env", "token_command", "cors_origin",
        "max_request_bytes",
    ),
    "model": ("path",),
    "learning": ("enabled", "retrain_delay", "rescue_window"),
    "log": ("level", "format"),
    "accounts": (
        "name", "host", "port", "tls", "tls_verify", "ca_file", "username", "password",
        "password_file", "password_env", "password_command", "auth", "oauth2_token",
        "oauth2_token_file", "oauth2_token_env", "oauth2_token_command", "folders",
        "junk_folder", "mode",
        "idle", "poll_interval", "scan_existing", "fetch_bytes", "set_keywords", "unreadable",
        "calibrate",
        "allow", "block", "timeout",
    ),
}  # fmt: skip


class _Section:
    """One mapping of the YAML file, read key by key with type checks."""

    def __init__(self, data: object, source: str, path: str, kind: str = "") -> None:
        self.source = source
        self.path = path
        self.kind = kind
        if data is None and not path:
            raise ConfigError("the file is empty", source=source)
        if not isinstance(data, dict):
            raise ConfigError(
                f"expected a mapping, got {_type(data)}", source=source, key=path or "(top)"
            )
        self.data: dict[str, Any] = {str(k): v for k, v in data.items()}

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _error(self, name: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, key=self.key(name))

    def _get(self, name: str, default: object) -> object:
        if name in self.data and self.data[name] is not None:
            return self.data[name]
        if default is _REQUIRED:
            raise self._error(name, "missing (required)")
        return default

    def string(self, name: str, default: object = None) -> str:
        value = self._get(name, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self._error(name, f"expected a string, got {_type(value)}")
        return str(value)

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(name, f"expected a whole number, got {_type(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self._error(name, f"must be {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(name, f"expected a number, got {_type(value)}")
        if value < minimum:
            raise self._error(name, f"must be >= {minimum:g}, got {value}")
        return float(value)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._error(name, f"expected true or false, got {_type(value)}")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise self._error(
                name,
                f"must be one of {', '.join(choices)}, got {value!r}"
                + _did_you_mean(value, choices),
            )
        return value

    def strings(self, name: str, default: list[str]) -> list[str]:
        value = self._get(name, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._error(name, f"expected a list of strings, got {_type(value)}")
        return list(value)

    def section(self, name: str, *, required: bool = True) -> _Section | None:
        if name not in self.data and not required:
            return None
        return _Section(self._get(name, _REQUIRED), self.source, self.key(name), name)

    def sections(self, name: str) -> list[_Section]:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, list) or not value:
            raise self._error(name, f"expected a list of one or more entries, got {_type(value)}")
        return [
            _Section(item, self.source, f"{self.key(name)}[{i}]", name)
            for i, item in enumerate(value)
        ]

    def done(self) -> None:
        """Refuse keys this section does not know."""
        known = KNOWN_KEYS[self.kind]
        for name in self.data:
            if name not in known:
                raise self._error(name, f"unknown key{_did_you_mean(name, known)}")


_REQUIRED = object()


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false"}.get(
        type(value), type(value).__name__
    )
