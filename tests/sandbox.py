"""The test Dovecot: the demo's (`spamd.demo.sandbox`) in the server layouts of the field.

Real servers differ from Dovecot's defaults (FIELD-NOTES.md): a personal
namespace ``INBOX.`` with ``.`` as separator (Courier, Debian's stock Cyrus,
many hosting Dovecots), no SPECIAL-USE markers and a user's own ``Spam``
folder, Gmail's ``[Gmail]/Spam``, and capabilities missing (MOVE, UIDPLUS,
IDLE). A `Layout` says which; `LAYOUTS` is the matrix the suite runs the
daemon's story on. Also here, because only tests and benchmarks need them:
OAuth2 logins, seeding a Maildir, adding users, restarts.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from spamd.demo import sandbox as shipped

# Dovecot 2.3's post-login capabilities, for hiding some of them (e.g. MOVE or IDLE).
CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


@dataclass(frozen=True)
class Layout:
    """How the server lays out each user's folders, and what it can do."""

    name: str
    prefix: str = ""  # of the personal namespace, e.g. "INBOX."
    separator: str = "/"
    special_use: bool = True  # folders marked \Junk, \Trash, ... (else: plain names)
    folders: tuple[str, ...] = ("Junk", "Trash", "Sent", "Drafts")  # each user has them
    hide: tuple[str, ...] = ()  # capabilities removed, e.g. ("MOVE",)
    junk: str = "Junk"  # the folder spamd should use, as the server spells it

    def __str__(self) -> str:
        return self.name


DEFAULT = Layout("dovecot")
LAYOUTS = (
    DEFAULT,
    Layout("inbox-prefix", prefix="INBOX.", separator=".", special_use=False,
           hide=("SPECIAL-USE",), junk="INBOX.Junk"),
    Layout("spam-folder", special_use=False, folders=("Spam", "Trash", "Sent"),
           hide=("SPECIAL-USE",), junk="Spam"),
    Layout("gmail", folders=("[Gmail]/Spam", "[Gmail]/Trash", "[Gmail]/Sent Mail"),
           junk="[Gmail]/Spam"),
    Layout("no-move", hide=("MOVE",)),
    Layout("no-move-no-uidplus", hide=("MOVE", "UIDPLUS")),
    Layout("no-idle", hide=("IDLE",)),
)  # fmt: skip
# The marker of each folder a Layout gives its users, by the folder's last name part.
SPECIAL_USE = {
    "junk": "\\Junk",
    "spam": "\\Junk",
    "trash": "\\Trash",
    "sent": "\\Sent",
    "sent mail": "\\Sent",
    "drafts": "\\Drafts",
}


@dataclass
class Dovecot(shipped.Dovecot):
    layout: Layout = DEFAULT
    # OAuth2 (XOAUTH2/OAUTHBEARER) logins, checked by RFC 7662 token introspection
    # at this URL (a test's own server on loopback); passwords keep working too.
    oauth2_introspection: str | None = None

    def namespace(self) -> str:
        layout = self.layout
        lines = [
            "namespace inbox {",
            "  inbox = yes",
            f"  separator = {layout.separator}",
            f"  prefix = {layout.prefix}",
        ]
        for folder in layout.folders:
            name = folder.replace("/", layout.separator)
            lines.append(f'  mailbox "{name}" {{')
            use = SPECIAL_USE.get(folder.rpartition("/")[2].lower())
            if layout.special_use and use:
                lines.append(f"    special_use = {use}")
            lines += ["    auto = subscribe", "  }"]
        return "\n".join([*lines, "}", ""])

    def extra_settings(self) -> str:
        lines = []
        if self.layout.hide:
            shown = [c for c in CAPABILITIES.split() if c not in self.layout.hide]
            lines.append(f"imap_capability = {' '.join(shown)}")
        if self.oauth2_introspection:
            (self.root / "oauth2.conf").write_text(
                f"introspection_mode = post\nintrospection_url = {self.oauth2_introspection}\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            )
            lines += [
                "auth_mechanisms = plain login xoauth2 oauthbearer",
                "passdb {",
                "  driver = oauth2",
                "  mechanisms = xoauth2 oauthbearer",
                f"  args = {self.root}/oauth2.conf",
                "}",
            ]
        return "\n".join(lines)

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        time.sleep(pause)
        self.start()

    def set_users(self, users: dict[str, str]) -> None:
        """Change passwords or add users; Dovecot reads the file on each login."""
        self.users = users
        self._write_users()

    def seed_maildir(self, user: str, raws: Sequence[bytes]) -> None:
        """Put messages straight into a user's Maildir (fast: no APPEND); Dovecot
        indexes them when the folder is next selected."""
        maildir = self.root / "mail" / user / "Maildir"
        owner = shipped._mail_user()
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        stamp = int(time.time())
        for i, raw in enumerate(raws):
            (maildir / "new" / f"{stamp}.{i}_{uuid.uuid4().hex}.seed").write_bytes(raw)
        if os.geteuid() == 0:
            for path in [maildir.parent, maildir, *maildir.glob("*"), *maildir.glob("*/*")]:
                os.chown(path, owner.pw_uid, owner.pw_gid)


@contextlib.contextmanager
def running(
    users: dict[str, str],
    layout: Layout = DEFAULT,
    *,
    hide: Sequence[str] = (),
    **options: Any,
) -> Iterator[Dovecot]:
    """A started test Dovecot of this layout (with `hide`: also without these capabilities)."""
    layout = replace(layout, hide=(*layout.hide, *hide))
    with shipped.started(lambda root: Dovecot(root, users, layout=layout, **options)) as server:
        yield server
