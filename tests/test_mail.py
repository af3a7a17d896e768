"""The IMAP adapter at its boundary: the server's response codes, and change notices.

The parsing is tested on the words the libraries really use; then against the
real Dovecot, that what it answers reaches `MailboxError.code`.
"""

from __future__ import annotations

import imaplib
from pathlib import Path
from typing import Any

import pytest

from spamd.errors import IncompatibleLibrary, MailboxError, SetupError, TransientMailboxError
from spamd.mail import imap
from spamd.mail.imap import Connection, response_code, server_said
from tests.conftest import Box, message, spamd_config, wait_until

# (a library's error message, the server's text in it, its response code), as
# imapclient 4 and imaplib word them for Dovecot 2.3's answers.
REFUSALS = [
    (
        "move failed: [TRYCREATE] Mailbox doesn't exist: Junk (0.001 + 0.000 secs).",
        "[TRYCREATE] Mailbox doesn't exist: Junk (0.001 + 0.000 secs).",
        "TRYCREATE",
    ),
    (
        "create failed: [ALREADYEXISTS] Mailbox already exists (0.001 + 0.000 secs).",
        "[ALREADYEXISTS] Mailbox already exists (0.001 + 0.000 secs).",
        "ALREADYEXISTS",
    ),
    (
        "SEARCH failed: [BADCHARSET (UTF-8)] Unknown charset",
        "[BADCHARSET (UTF-8)] Unknown charset",
        "BADCHARSET",
    ),
    ("delete failed: [nonexistent] No such folder", "[nonexistent] No such folder", "NONEXISTENT"),
    (  # imaplib: a BAD to a command imapclient hands it
        "UID command error: BAD [b'[CLIENTBUG] Invalid uidset (0.001 + 0.000 secs).']",
        "[CLIENTBUG] Invalid uidset (0.001 + 0.000 secs).",
        "CLIENTBUG",
    ),
    (
        "COPY command error: BAD [b'Error in IMAP command COPY: Invalid messageset']",
        "Error in IMAP command COPY: Invalid messageset",
        None,
    ),
    # Cyrus: no code at all. The adapter's CREATE asks LIST instead (see find_junk).
    ("create failed: Mailbox already exists", "Mailbox already exists", None),
    ("select failed: Mailbox doesn't exist: Nope", "Mailbox doesn't exist: Nope", None),
    # a code is only a code where the text begins
    ("copy failed: Over quota [OVERQUOTA] soon", "Over quota [OVERQUOTA] soon", None),
    # not the server's answer at all
    ("command: COPY => socket error: EOF", "", None),
    ("Unexpected IDLE response: b'* BYE'", "", None),
    ("COPY command error: BAD [b'unterminated", "", None),
]


@pytest.mark.parametrize(("error", "said", "code"), REFUSALS)
def test_the_servers_words_and_response_code_are_read_from_a_library_error(
    error: str, said: str, code: str | None
) -> None:
    assert server_said(error) == said
    assert response_code(said) == code


def test_a_mailbox_error_has_no_code_unless_the_server_gave_one() -> None:
    assert MailboxError("x").code is None
    assert MailboxError("x", code="TRYCREATE").code == "TRYCREATE"
    assert TransientMailboxError("connection lost").code is None
    assert SetupError("no Junk", fix="make one").code is None


def test_dovecot_says_trycreate_for_a_move_or_copy_to_a_missing_folder(
    mailbox: Box, tmp_path: Path
) -> None:
    mailbox.append(message("Going nowhere", "There is no such folder."))
    connection = Connection.open(spamd_config(tmp_path, mailbox.settings()).accounts[0])
    try:
        connection.select("INBOX")
        (uid,) = connection.uids_after(0)
        with pytest.raises(MailboxError) as moved:
            connection.move([uid], "Nowhere")
        with pytest.raises(MailboxError) as copied:
            connection.copy([uid], "Nowhere")
        assert connection.uids_after(0) == [uid]  # the connection is still usable
    finally:
        connection.logout()
    assert (moved.value.code, copied.value.code) == ("TRYCREATE", "TRYCREATE")
    assert not isinstance(moved.value, TransientMailboxError)


def test_dovecot_says_alreadyexists_when_creating_a_folder_that_exists(mailbox: Box) -> None:
    mailbox.client.create_folder("Archive")
    with pytest.raises(MailboxError) as created, imap._mapped("CREATE", mailbox.user):
        mailbox.client.create_folder("Archive")
    assert created.value.code == "ALREADYEXISTS"
    assert created.value.args[0].startswith(f"{mailbox.user}: CREATE failed (")


# -- change notices ---------------------------------------------------------------


@pytest.mark.parametrize("imap_class", [imaplib.IMAP4, imaplib.IMAP4_SSL])
def test_imaplib_still_files_untagged_responses_where_the_adapter_listens(
    imap_class: type[imaplib.IMAP4],
) -> None:
    # Fails on a Python whose imaplib moved the private method the adapter wraps:
    # then spamd refuses to connect (below) rather than miss changes silently.
    imap.check_change_hook(imap_class)
    assert callable(getattr(imap_class, imap.CHANGE_HOOK))


class Renamed(imaplib.IMAP4):
    _append_untagged = None  # as if imaplib had renamed it


class Reshaped(imaplib.IMAP4):
    def _append_untagged(self, typ: str, dat: Any, response: Any = None) -> None:
        pass


@pytest.mark.parametrize("imap_class", [Renamed, Reshaped])
def test_an_imaplib_without_the_hook_is_refused_naming_its_version_and_the_hook(
    imap_class: type[imaplib.IMAP4],
) -> None:
    with pytest.raises(IncompatibleLibrary) as refused:
        imap.check_change_hook(imap_class)
    error = refused.value
    assert (error.library, error.missing) == (
        "imaplib",
        f"{imap_class.__name__}._append_untagged(self, typ, dat)",
    )
    assert error.version.startswith(f"{imaplib.__version__} (Python 3.")  # type: ignore[attr-defined]
    assert isinstance(error, SetupError)
    assert str(error).startswith(f"imaplib {error.version} has no {error.missing}: ")


def test_connecting_refuses_an_imaplib_whose_hook_changed(
    mailbox: Box, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = imaplib.IMAP4._append_untagged  # type: ignore[attr-defined]

    def reshaped(self: imaplib.IMAP4, typ: str, dat: Any, *, response: Any = None) -> None:
        original(self, typ, dat)  # imaplib itself still works

    monkeypatch.setattr(imaplib.IMAP4, "_append_untagged", reshaped)
    with pytest.raises(IncompatibleLibrary, match="_append_untagged"):
        Connection.open(spamd_config(tmp_path, mailbox.settings()).accounts[0])


def test_changes_dovecot_tells_during_other_commands_are_noted(
    mailbox: Box, tmp_path: Path
) -> None:
    # Dovecot tells of new mail (EXISTS) and of another client's flags (FETCH) in the
    # reply to whatever command comes next; imaplib files them where the next reply
    # of that kind takes them. The adapter must note them as they arrive.
    mailbox.append(message("First", "Already here."))
    connection = Connection.open(spamd_config(tmp_path, mailbox.settings()).accounts[0])
    try:
        connection.select("INBOX")
        (first,) = connection.uids_after(0)
        assert not connection.reported(("EXISTS", "EXPUNGE", "FETCH"))
        mailbox.append(message("Second", "Came while spamd was busy."))
        wait_until(lambda: mailbox.count("INBOX") == 2)
        assert connection.sizes([first])  # a FETCH: its reply tells of the arrival
        assert connection.reported(("EXISTS",))
        assert not connection.reported(("FETCH",))
        mailbox.client.select_folder("INBOX")
        mailbox.client.add_flags([first], ["$NotJunk"])
        assert connection.uids_after(0) == [first, first + 1]  # a SEARCH tells of the flag
        assert connection.reported(("FETCH",))
    finally:
        connection.logout()
