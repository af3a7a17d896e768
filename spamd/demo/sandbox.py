"""A private Dovecot on 127.0.0.1, for `spamd demo` (and, extended, for the tests).

It runs in the foreground from its own directory (config, mail, sockets, logs,
a self-signed certificate), with a plain/STARTTLS listener and an implicit-TLS
listener, a ``Junk`` folder with SPECIAL-USE ``\\Junk``, and settings that keep
it quick (no delay after a failed login, IDLE checks every second). Debian's
``dovecot-imapd`` provides the binary. As root, mail and logins run as
``nobody``, since Dovecot refuses uid 0 for both.

What only the tests and benchmarks need (other server layouts, hidden
capabilities, OAuth2 logins, seeding, restarts) is in ``tests/dovecot.py``,
outside the shipped package: a subclass that overrides `Dovecot.namespace` and
`Dovecot.extra_settings`.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from spamd.errors import SpamdError

DOVECOT = "/usr/sbin/dovecot"
D = TypeVar("D", bound="Dovecot")


class SandboxError(SpamdError):
    """The private Dovecot could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Dovecot:
    root: Path
    users: dict[str, str]
    imap_port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def cert(self) -> Path:
        return self.root / "cert.pem"

    def namespace(self) -> str:
        """The personal namespace block of dovecot.conf."""
        return _NAMESPACE

    def extra_settings(self) -> str:
        """More lines for dovecot.conf (none here)."""
        return ""

    def start(self: D) -> D:
        if not Path(DOVECOT).exists():
            raise SandboxError(
                f"{DOVECOT} not found: install Debian's dovecot-imapd (scripts/setup does)"
            )
        self._write_files()
        log = (self.root / "dovecot.out").open("ab")
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Stop this instance only (its own process group), at once."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            # The master is gone, but its children may take a moment to die. One
            # still holding a socket in run/ makes the next start refuse to run
            # ("Dovecot is already running?").
            _wait_gone(self.process.pid)
        self.process = None

    def _wait_ready(self, timeout: float = 10.0) -> None:
        if greeted(self.imap_port, self.process, timeout):
            return
        output = (self.root / "dovecot.out").read_text(errors="replace")[-2000:]
        log = (
            (self.root / "dovecot.log").read_text(errors="replace")[-2000:]
            if (self.root / "dovecot.log").exists()
            else ""
        )
        raise SandboxError(f"dovecot did not start:\n{output}\n{log}")

    def _write_files(self) -> None:
        root = self.root
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        user = _mail_user()
        if os.geteuid() == 0:
            os.chown(root / "mail", user.pw_uid, user.pw_gid)
        if not self.cert.exists():
            _self_signed(root)
        self._write_users()
        internal = f"default_internal_user = {user.pw_name}\ndefault_login_user = {user.pw_name}\n"
        internal += f"default_internal_group = {grp.getgrgid(user.pw_gid).gr_name}\n"
        (root / "dovecot.conf").write_text(
            _CONFIG.format(
                root=root,
                imap=self.imap_port,
                imaps=self.imaps_port,
                internal=internal,
                uid=user.pw_uid,
                extra=self.extra_settings(),
            )
            + self.namespace()
        )

    def _write_users(self) -> None:
        user = _mail_user()
        lines = [
            f"{name}:{{PLAIN}}{password}:{user.pw_uid}:{user.pw_gid}::{self.root}/mail/{name}::"
            for name, password in self.users.items()
        ]
        users_file = self.root / "users"
        before = users_file.stat().st_mtime if users_file.exists() else 0.0
        users_file.write_text("\n".join(lines) + "\n")
        # Dovecot re-reads the file when its mtime (in seconds) changes: make sure it does.
        mtime = max(time.time(), before + 1.0)
        os.utime(users_file, (mtime, mtime))


def greeted(port: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Whether an IMAP server on 127.0.0.1:port said "* OK" within `timeout` seconds
    (False at once if its process ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return True
        except OSError:
            time.sleep(0.02)
    return False


def _wait_gone(group: int, timeout: float = 10.0) -> None:
    """Wait until no live process is left in a process group (zombies are dead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive_in_group(group):
        time.sleep(0.01)


def _alive_in_group(group: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] not in ("Z", "X"):
                return True
    return False


def _mail_user() -> pwd.struct_passwd:
    """Who owns the mail: `nobody` as root (Dovecot refuses uid 0), else ourselves."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def _self_signed(root: Path) -> None:
    subprocess.run(
        [
            shutil.which("openssl") or "openssl",
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (root / "key.pem").chmod(0o644)  # a throwaway key; Dovecot reads it as the login user


def running(users: dict[str, str]) -> contextlib.AbstractContextManager[Dovecot]:
    """A started Dovecot with these users (name -> password), stopped and removed afterwards."""
    return started(lambda root: Dovecot(root, users))


@contextlib.contextmanager
def started(make: Callable[[Path], D]) -> Iterator[D]:
    """A Dovecot made by `make` in a fresh directory, started; stopped and removed afterwards."""
    # /tmp and 0755: as root, Dovecot's `nobody` must be able to enter it.
    root = Path(tempfile.mkdtemp(prefix="spamd-dovecot-", dir="/tmp"))
    root.chmod(0o755)
    server = make(root)
    try:
        for attempt in range(3):
            try:
                server.start()
                break
            except SandboxError as exc:
                # Another process took a port between free_port() and Dovecot's bind.
                if "Address already in use" not in str(exc) or attempt == 2:
                    raise
                server.stop()
                server = make(root)  # with new ports
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


_NAMESPACE = """\
namespace inbox {
  inbox = yes
  separator = /
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
}
"""

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = spamd-sandbox-{imap}
log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap
{internal}first_valid_uid = {uid}
last_valid_uid = 0
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_max_userip_connections = 2000
mailbox_idle_check_interval = 1 secs
{extra}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
  process_limit = 1000
  client_limit = 1000
  service_count = 0
}}
service imap {{
  process_limit = 2000
  client_limit = 1
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
default_client_limit = 4000
default_process_limit = 2000
"""
