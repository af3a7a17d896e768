"""Corrections made through real sync clients from Debian: isync's mbsync and offlineimap3.

Each client syncs the test user's mailbox to a local Maildir; the "user" moves
files between Maildir folders and syncs again, as a mail program on a laptop
would. mbsync uploads a moved message with an added ``X-TUID:`` header;
offlineimap3 uploads it unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from spamd.ops.config import Config
from spamd.store.state import State, state_path
from tests.conftest import HAM, SPAM, Box, running_service, spamd_config, wait_until


class Client:
    """One sync client with a config for a test user and a local Maildir."""

    name = ""

    def __init__(self, box: Box, tmp: Path) -> None:
        self.box = box
        self.local = tmp / f"{self.name}-mail"
        self.local.mkdir()
        self.config = tmp / f"{self.name}.conf"
        self.tmp = tmp

    def command(self) -> list[str]:
        raise NotImplementedError

    def folder(self, name: str) -> Path:
        raise NotImplementedError

    def sync(self) -> None:
        done = subprocess.run(
            self.command(), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{self.name}: {done.stdout[-2000:]} {done.stderr[-2000:]}"

    def files(self, folder: str) -> list[Path]:
        return sorted(p for sub in ("cur", "new") for p in (self.folder(folder) / sub).glob("*"))

    def move(self, source: str, target: str, containing: bytes, but_not: bytes = b"\0") -> None:
        """The user drags the message containing these bytes from one folder to another."""
        (found,) = [
            p
            for p in self.files(source)
            if containing in (raw := p.read_bytes()) and but_not not in raw
        ]
        # A moved file is new to the target folder: without the source's UID.
        name = re.sub(r",U=\d+", "", found.name)
        (self.folder(target) / "cur").mkdir(parents=True, exist_ok=True)
        for sub in ("new", "tmp"):
            (self.folder(target) / sub).mkdir(parents=True, exist_ok=True)
        shutil.move(found, self.folder(target) / "cur" / name)


class Mbsync(Client):
    name = "mbsync"

    def command(self) -> list[str]:
        b = self.box
        self.config.write_text(
            f"IMAPAccount test\nHost 127.0.0.1\nPort {b.server.imap_port}\nUser {b.user}\n"
            f"Pass {b.password}\nSSLType None\nAuthMechs LOGIN\n\n"
            "IMAPStore remote\nAccount test\n\n"
            f"MaildirStore local\nPath {self.local}/\nInbox {self.local}/INBOX\n"
            "SubFolders Verbatim\n\n"
            "Channel all\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n"
            "Expunge Both\nSyncState *\n"
        )
        return ["mbsync", "-q", "-c", str(self.config), "all"]

    def folder(self, name: str) -> Path:
        return self.local / name


class OfflineImap(Client):
    name = "offlineimap"

    def command(self) -> list[str]:
        b = self.box
        self.config.write_text(
            f"[general]\naccounts = test\nmetadata = {self.tmp}/offlineimap-meta\n\n"
            "[Account test]\nlocalrepository = local\nremoterepository = remote\n\n"
            f"[Repository local]\ntype = Maildir\nlocalfolders = {self.local}\n\n"
            f"[Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\n"
            f"remoteport = {b.server.imap_port}\nremoteuser = {b.user}\n"
            f"remotepass = {b.password}\nssl = no\nstarttls = no\n"
        )
        return ["offlineimap", "-o", "-u", "quiet", "-c", str(self.config)]

    def folder(self, name: str) -> Path:
        return self.local / name


CLIENTS = [Mbsync, OfflineImap]


def junk_seen(box: Box, config: Config, count: int) -> None:
    """Wait until the Junk watcher has recorded `count` messages as being in Junk."""
    validity = int(box.client.folder_status("Junk", [b"UIDVALIDITY"])[b"UIDVALIDITY"])
    state = State(state_path(config))
    try:
        wait_until(lambda: len(state.junk_items(box.user, validity)) == count, what="Junk read")
    finally:
        state.close()


@pytest.mark.parametrize("kind", CLIENTS, ids=lambda c: c.name)
def test_rescues_and_junkings_through_a_sync_client_are_learned(
    kind: type[Client], mailbox: Box, tmp_path: Path
) -> None:
    if shutil.which(kind.name) is None:
        pytest.fail(f"{kind.name} is not installed: scripts/setup installs it")
    mailbox.client.create_folder("Archive")
    client = kind(mailbox, tmp_path)
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    first, second = SPAM[0].read_bytes(), SPAM[1].read_bytes()
    ham = HAM[0].read_bytes()
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.junk_watchers))
        for raw in (first, second, ham):
            mailbox.append(raw)
        junk_seen(mailbox, config, 2)
        wait_until(lambda: len(events.named("message")) == 3)
        client.sync()
        client.move("Junk", "INBOX", first[-60:])  # "not spam"
        client.move("Junk", "Archive", second[-60:])  # "not spam", filed elsewhere
        client.sync()
        wait_until(lambda: len(events.named("correction")) == 2, timeout=30)
        # A near copy of a rescued message, delivered later, is kept too.
        mailbox.append(first.replace(b"Message-ID: <", b"Message-ID: <later-", 1))
        wait_until(lambda: len(events.named("message")) >= 5)
        client.sync()
        client.move("INBOX", "Junk", ham[-60:])  # "this is spam"
        client.sync()
        wait_until(lambda: len(events.named("correction")) == 3, timeout=30)
        client.move("INBOX", "Junk", first[-60:], but_not=b"<later-")  # "spam after all"
        client.sync()
        wait_until(lambda: len(events.named("correction")) == 4, timeout=30)
    corrections = [(e["label"], e["how"], e["folder"]) for e in events.named("correction")]
    assert sorted(corrections[:2]) == [("ham", "rescued", "Archive"), ("ham", "rescued", "INBOX")]
    assert corrections[2][:2] == corrections[3][:2] == ("spam", "moved_to_junk")
    labels = {c.subject: c.label for c in State(state_path(config)).corrections()}
    assert len(labels) == 3 and sorted(labels.values()) == ["ham", "spam", "spam"]
    later = [e for e in events.named("message") if e["reason"] in ("rescued-before", "score")]
    assert later and later[-1]["action"] == "keep"
    mailbox.reconnect()
    assert mailbox.count("Junk") == 2  # what the user junked, nothing spamd moved back
    assert mailbox.count("INBOX") == 1 and mailbox.count("Archive") == 1
    assert mailbox.total() == 4
