"""Which folder is Junk, and which is a watched folder, on each server layout (pure)."""

from __future__ import annotations

import pytest

from spamd.core.layout import (
    Folder,
    Listing,
    Namespace,
    explain,
    find_junk,
    match_folder,
    missing_folders,
    move_method,
)

DOVECOT = Namespace("", "/")
COURIER = Namespace("INBOX.", ".")  # also Debian's stock Cyrus and many hosting Dovecots


def listing(namespace: Namespace, *folders: str | tuple[str, str]) -> Listing:
    return Listing(
        namespace,
        tuple(
            Folder(f, frozenset({"\\HasNoChildren"}))
            if isinstance(f, str)
            else Folder(f[0], frozenset({f[1], "\\HasNoChildren"}))
            for f in ("INBOX", *folders)
        ),
    )


@pytest.mark.parametrize(
    ("server", "junk", "how"),
    [
        (listing(DOVECOT, "Sent", ("Junk", "\\Junk")), "Junk", "\\Junk"),
        (listing(DOVECOT, ("Spam", "\\Junk"), "Junk"), "Spam", "\\Junk"),  # the marker wins
        (listing(DOVECOT, ("[Gmail]", "\\Noselect"), ("[Gmail]/Spam", "\\Junk")),
         "[Gmail]/Spam", "\\Junk"),
        (listing(DOVECOT, "[Gmail]/Spam"), "[Gmail]/Spam", "'[Gmail]/Spam'"),
        (listing(DOVECOT, "Sent", "Spam"), "Spam", "'Spam'"),
        (listing(DOVECOT, "spam"), "spam", "'Spam'"),  # case-insensitively
        (listing(DOVECOT, "Junk E-mail"), "Junk E-mail", "'Junk E-mail'"),
        (listing(DOVECOT, "Junk Email"), "Junk Email", "'Junk Email'"),
        (listing(DOVECOT, "Bulk Mail"), "Bulk Mail", "'Bulk Mail'"),
        (listing(DOVECOT, "Spam", "Junk"), "Junk", "'Junk'"),  # the usual order
        (listing(COURIER, "INBOX.Sent", "INBOX.Junk"), "INBOX.Junk", "'Junk'"),
        (listing(COURIER, "INBOX.Trash", "INBOX.spam"), "INBOX.spam", "'Spam'"),
        (listing(DOVECOT, "INBOX/Junk"), "INBOX/Junk", "'Junk'"),  # INBOX-prefixed form
        (listing(COURIER, ("INBOX.Spam", "\\Junk")), "INBOX.Spam", "\\Junk"),
    ],
)  # fmt: skip
def test_junk_is_found_by_its_marker_then_by_a_usual_name(
    server: Listing, junk: str, how: str
) -> None:
    found = find_junk(server)
    assert (found.name, found.exists) == (junk, True)
    assert how in found.how


@pytest.mark.parametrize(
    ("namespace", "created"),
    [(DOVECOT, "Junk"), (COURIER, "INBOX.Junk"), (Namespace("", "."), "Junk")],
)
def test_junk_is_created_inside_the_personal_namespace_only_when_none_exists(
    namespace: Namespace, created: str
) -> None:
    found = find_junk(listing(namespace, "Sent", ("Drafts", "\\Drafts")))
    assert (found.name, found.exists) == (created, False)
    assert "created" in found.how


def test_a_configured_junk_folder_always_wins() -> None:
    server = listing(COURIER, ("INBOX.Junk", "\\Junk"), "INBOX.Quarantine")
    assert find_junk(server, "Quarantine").name == "INBOX.Quarantine"
    assert find_junk(server, "INBOX.Quarantine").name == "INBOX.Quarantine"
    missing = find_junk(server, "Lists/Spam")
    assert (missing.name, missing.exists) == ("INBOX.Lists.Spam", False)
    assert "configured" in missing.how


def test_a_folder_that_cannot_be_selected_is_never_junk() -> None:
    server = listing(DOVECOT, ("Junk", "\\Noselect"), ("Spam", "\\NonExistent"))
    assert find_junk(server).exists is False


def test_watched_folders_are_matched_the_same_way() -> None:
    courier = listing(COURIER, "INBOX.Lists", "INBOX.Lists.work", "INBOX.Newsletters")
    assert match_folder("inbox", courier) == "INBOX"
    assert match_folder("Lists/work", courier) == "INBOX.Lists.work"
    assert match_folder("INBOX.Lists", courier) == "INBOX.Lists"
    assert match_folder("newsletters", courier) == "INBOX.Newsletters"
    assert missing_folders(["INBOX", "Lists", "NoSuchFolder"], courier) == ["NoSuchFolder"]
    dovecot = listing(DOVECOT, "Feed", "feed")
    assert match_folder("feed", dovecot) == "feed"  # an exact match before a folded one


@pytest.mark.parametrize(
    ("capabilities", "method"),
    [
        ({"IMAP4rev1", "MOVE", "UIDPLUS"}, "move"),
        ({"MOVE"}, "move"),
        ({"uidplus"}, "copy"),
        (set(), "flag"),
    ],
)
def test_the_move_method_never_risks_other_mail(capabilities: set[str], method: str) -> None:
    assert move_method(capabilities) == method


def test_capabilities_are_explained_with_a_warning_for_unsafe_moves() -> None:
    assert explain({"MOVE", "IDLE", "SPECIAL-USE", "NAMESPACE"})[0].startswith("MOVE")
    lines = explain({"IMAP4rev1"})
    assert lines[0].startswith("WARNING: neither MOVE nor UIDPLUS")
    assert any("no IDLE" in line for line in lines)
    assert any("no NAMESPACE" in line for line in lines)
