"""`spamd demo`: the daemon against a private Dovecot on 127.0.0.1, with sample mail.

Starts the sandbox Dovecot (implicit TLS, its own self-signed CA), writes a
configuration for one account, runs the real service in this process, delivers
the sample ham and spam from another connection while spamd IDLEs, and shows
where each message landed. Nothing leaves the machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from spamd.core.message import parse
from spamd.daemon.service import Service
from spamd.demo.sandbox import running
from spamd.mail.imap import Connection
from spamd.ops import config as config_lib
from spamd.ops import log as log_lib

USER, PASSWORD = "demo", "demo-password"
WAIT = 15.0


def main(samples: Path, model: Path) -> int:
    mails = sorted(samples.glob("*/*.eml"))
    if not mails:
        print(f"spamd demo: no samples in {samples}", file=sys.stderr)
        return 1
    log_lib.configure("info", "console" if sys.stdout.isatty() else "json")
    log = log_lib.get()
    with running({USER: PASSWORD}) as dovecot, tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "spamd.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(Path(tmp) / "state"),
                    "model": {"path": str(model)},
                    "accounts": [
                        {
                            "name": USER,
                            "host": "127.0.0.1",
                            "port": dovecot.imaps_port,
                            "tls": "ssl",
                            "ca_file": str(dovecot.cert),
                            "username": USER,
                            "password": PASSWORD,
                            # A demo mailbox has no mail of its own to calibrate on: with
                            # the default it would stay cautious and flag, not move, the
                            # less certain spam. The demo shows the shipped model's verdicts.
                            "calibrate": False,
                        }
                    ],
                }
            )
        )
        config = config_lib.load(config_file, model)
        account = config.accounts[0]
        service = Service(config, log=log)
        service.start()
        try:
            _wait(
                lambda: service.watchers[0].health.idle and service.watchers[0].health.last_sync > 0
            )
            print(
                f"\n--> delivering {len(mails)} sample messages to INBOX of "
                f"{USER}@127.0.0.1:{dovecot.imaps_port}\n"
            )
            sender = Connection.open(account)
            for path in mails:
                sender.append("INBOX", path.read_bytes())
            _wait(lambda: service.watchers[0].health.handled >= len(mails))
            time.sleep(0.2)
            _show(sender, service.watchers[0].health.junk_folder)
            print(f"explain a verdict with `spamd explain {mails[0]}`")
            sender.logout()
        finally:
            service.stop()
    return 0


def _wait(done: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        time.sleep(0.05)


def _show(mailbox: Connection, junk: str) -> None:
    print("\n--> where the mail landed\n")
    print(f"{'folder':<8} subject")
    total = 0
    for folder in ("INBOX", junk):
        mailbox.select(folder)
        for message in mailbox.fetch(mailbox.uids_after(0), 64 * 1024):
            print(f"{folder:<8} {parse(message.raw).subject}")
            total += 1
    print(f"\n{total} messages in all")
