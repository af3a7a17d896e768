"""A private Cyrus IMAP 3.6 on 127.0.0.1: a second server implementation for the suite.

Debian's ``cyrus-imapd`` conflicts with ``dovecot-imapd`` in apt, so `scripts/cyrus`
unpacks the packages into ``.cyrus/`` instead of installing them. Cyrus insists on
running as a user named ``cyrus`` (and never as root): the master runs in a private
mount namespace (``unshare -m``) whose ``/etc/passwd`` has that user with nobody's uid,
so nothing on the machine changes. The configuration is Debian's stock one
(``altnamespace: no``, ``unixhierarchysep: no``: every folder under ``INBOX.`` with
``.``, no Junk folder, no SPECIAL-USE markers), plus ``idled`` so that IDLE answers at
once (without it, about once a minute), and a SASL check that accepts any password.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imapclient

from spamd.demo.sandbox import SandboxError, free_port, greeted
from tests.sandbox import Layout

PACKAGES = Path(__file__).resolve().parent.parent / ".cyrus"  # made by scripts/cyrus
BIN = PACKAGES / "usr" / "lib" / "cyrus" / "bin"
# How spamd should see it: INBOX. and ".", no Junk until spamd creates INBOX.Junk.
LAYOUT = Layout("cyrus", prefix="INBOX.", separator=".", special_use=False, folders=(),
                junk="INBOX.Junk")  # fmt: skip


def unavailable() -> str | None:
    """Why Cyrus cannot run here, or None."""
    if not (BIN / "master").exists():
        return f"Cyrus is not unpacked in {PACKAGES} (scripts/cyrus)"
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return "Cyrus needs root, unshare and setpriv (a private /etc/passwd with a cyrus user)"
    return None


@dataclass
class Cyrus:
    root: Path
    users: dict[str, str]
    layout: Layout = LAYOUT
    imap_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Cyrus:
        nobody = pwd.getpwnam("nobody")
        for sub in ("lib/socket", "spool", "run/socket", "run/proc", "run/lock"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "passwd").write_text(
            Path("/etc/passwd").read_text()
            + f"cyrus:x:{nobody.pw_uid}:{nobody.pw_gid}:cyrus:{self.root}:/bin/false\n"
        )
        (self.root / "imapd.conf").write_text(_IMAPD.format(root=self.root))
        (self.root / "cyrus.conf").write_text(
            _CYRUS.format(bin=BIN, conf=self.root / "imapd.conf", port=self.imap_port)
        )
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        libraries = f"{PACKAGES}/usr/lib/x86_64-linux-gnu:{PACKAGES}/lib/x86_64-linux-gnu"
        script = (
            f"mount --bind {self.root}/passwd /etc/passwd && "
            f"exec setpriv --reuid={nobody.pw_uid} --regid={nobody.pw_gid} --clear-groups "
            f"{BIN}/master -D -C {self.root}/imapd.conf -M {self.root}/cyrus.conf "
            f"-p {self.root}/run/master.pid"
        )
        with (self.root / "master.out").open("ab") as out:
            self.process = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "LD_LIBRARY_PATH": libraries},
            )  # fmt: skip
        self._wait_ready()
        admin = imapclient.IMAPClient("127.0.0.1", self.imap_port, ssl=False)
        admin.login("cyrus", "any")
        for user in self.users:
            admin.create_folder(f"user.{user}")
        admin.logout()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        if greeted(self.imap_port, self.process, timeout):
            return
        output = (self.root / "master.out").read_text(errors="replace")[-2000:]
        raise SandboxError(f"cyrus did not start:\n{output}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def running(users: dict[str, str]) -> Iterator[Cyrus]:
    root = Path(tempfile.mkdtemp(prefix="spamd-cyrus-", dir="/tmp"))
    root.chmod(0o755)
    server = Cyrus(root, users)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


_IMAPD = """\
configdirectory: {root}/lib
partition-default: {root}/spool
defaultpartition: default
proc_path: {root}/run/proc
mboxname_lockpath: {root}/run/lock
lmtpsocket: {root}/run/socket/lmtp
idlesocket: {root}/run/socket/idle
notifysocket: {root}/run/socket/notify
altnamespace: no
unixhierarchysep: no
admins: cyrus
allowplaintext: yes
sasl_pwcheck_method: alwaystrue
sasl_mech_list: PLAIN LOGIN
servername: localhost
syslog_prefix: spamd-test-cyrus
"""

_CYRUS = """\
START {{
  recover cmd="{bin}/ctl_cyrusdb -C {conf} -r"
  idled cmd="{bin}/idled -C {conf}"
}}
SERVICES {{
  imap cmd="{bin}/imapd -C {conf}" listen="127.0.0.1:{port}" prefork=0
}}
EVENTS {{
}}
"""
