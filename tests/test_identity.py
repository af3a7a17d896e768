"""Which copies are the same mail, and which arrivals are rescues (pure)."""

from __future__ import annotations

from spamd.core.identity import RESCUE_WINDOW, Sighting, arrival, mail_key, message_id, rescue_of
from tests.conftest import SPAM

RAW = SPAM[0].read_bytes()


def test_what_clients_do_on_upload_keeps_the_key() -> None:
    lf = RAW.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    mbsync = crlf.replace(b"\r\nSubject:", b"\r\nX-TUID: 4Kq0lyf+dF7k\r\nSubject:", 1)
    mutt = b"Status: RO\nX-Status: A\nX-Keywords: $Junk\nX-UID: 7\n" + lf
    refolded = lf.replace(b"\nSubject: ", b"\nSubject:\n\t ", 1)
    copies = (crlf, lf, mbsync, mutt, refolded)
    assert len(set(copies)) == len(copies)
    assert {mail_key(copy) for copy in copies} == {mail_key(RAW)}


def test_other_mail_has_another_key() -> None:
    keys = {mail_key(p.read_bytes()) for p in SPAM}
    assert len(keys) == len(SPAM)
    changed_body = RAW.rstrip() + b" and one more word\r\n"
    new_id = RAW.replace(b"Message-ID: <", b"Message-ID: <other-", 1)
    assert message_id(new_id) != message_id(RAW) != ""
    assert mail_key(changed_body) != mail_key(RAW)
    assert mail_key(new_id) != mail_key(RAW)


def test_mail_without_a_message_id_is_known_by_content() -> None:
    raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello there\r\n"
    uploaded = b"X-TUID: abc\nFrom: a@example.org\nSubject: hi\n\nhello there\n"
    assert message_id(raw) == ""
    assert mail_key(raw) == mail_key(uploaded)
    assert mail_key(raw) != mail_key(raw.replace(b"hello", b"howdy"))


def test_a_rescue_is_the_same_mail_close_in_time_either_way() -> None:
    gone = Sighting("k", at=1000.0)
    before = Sighting("k", at=990.0, folder="INBOX", uid=1)  # mbsync uploads first
    after = Sighting("k", at=1005.0, folder="Work", uid=2)
    stale = Sighting("k", at=1000.0 - RESCUE_WINDOW - 1, folder="INBOX", uid=3)
    other = Sighting("x", at=1000.0, folder="INBOX", uid=4)
    assert rescue_of(gone, [stale, other, after, before]) == after
    assert rescue_of(gone, [before]) == before
    assert rescue_of(gone, [stale, other]) is None
    assert rescue_of(gone, []) is None


def test_an_arrival_is_new_mail_unless_something_is_known_of_the_same_mail() -> None:
    assert arrival(label=None, in_junk=False) == "new"
    assert arrival(label="spam", in_junk=False) == "known-spam"  # a re-delivery
    assert arrival(label="spam", in_junk=True) == "held"  # rescue under way, or re-delivery
    assert arrival(label=None, in_junk=True) == "held"
    assert arrival(label="ham", in_junk=True) == "rescued"  # the user's latest word
    assert arrival(label="ham", in_junk=False) == "rescued"
