"""The parser: what it extracts, and that no input makes it raise or stall."""

from __future__ import annotations

import base64
import email.errors
import email.header
import re
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from spamd.core.message import (
    DEFAULT_MAX_BYTES,
    MAX_TEXT_CHARS,
    _split_head,
    decode_bytes,
    delivery_time,
    parse,
)
from tests.conftest import SAMPLES, message

MULTIPART = b"""From: =?utf-8?q?Jos=C3=A9_P=C3=A9rez?= <Jose@Example.COM>
Reply-To: other@elsewhere.example
Subject: =?utf-8?b?w5xiZXJzaWNodA==?= of [SPAM] offers
Message-ID: <abc@example.com>
X-Spam-Status: Yes, score=99
X-Keywords: spam
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 cr=E8me, see www.example.net/page
--inner
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style></head><body><p>Hello &amp; welcome</p>
<script>var x = "<p>hidden</p>";</script><a href="https://Shop.Example.org/x?y=1">buy</a></body></html>
--inner--
--outer
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20invoice.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
"""


def test_extracts_headers_text_links_and_attachments() -> None:
    parsed = parse(MULTIPART)
    assert parsed.subject == "Übersicht of [SPAM] offers"
    assert parsed.sender.name == "José Pérez"
    assert parsed.sender.address == "jose@example.com"
    assert parsed.sender.domain == "example.com"
    assert parsed.reply_to.domain == "elsewhere.example"
    assert "Café crème" in parsed.text
    assert "Hello & welcome" in parsed.text
    assert "hidden" not in parsed.text and "color" not in parsed.text
    assert parsed.has_html
    assert "https://Shop.Example.org/x?y=1" in parsed.links
    assert set(parsed.link_domains) >= {"shop.example.org", "example.net"}
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("€ invoice.pdf", "application/pdf")
    ]
    assert parsed.message_id == "<abc@example.com>"


def test_learnable_headers_exclude_verdicts_and_client_state() -> None:
    names = {name for name, _ in parse(MULTIPART).headers}
    assert "content-type" in names
    assert not any(name.startswith(("x-spam", "x-keywords", "received")) for name in names)


def test_verdict_tag_at_start_of_subject_is_dropped() -> None:
    assert parse(message("[SPAM] cheap watches", "x")).subject == "cheap watches"
    assert parse(message("*****SPAM***** cheap", "x")).subject == "cheap"


def test_strips_mbox_from_line() -> None:
    parsed = parse(b"From someone@example.org Mon Jan  1 00:00:00 2002\n" + message("hi", "body"))
    assert parsed.subject == "hi"
    assert parsed.sender.address == "someone@example.org"


def test_lying_charsets_fall_back_to_what_decodes() -> None:
    assert decode_bytes("café".encode(), "us-ascii") == "café"
    assert decode_bytes("café".encode("latin-1"), "utf-8") == "caf\ufffd"
    assert decode_bytes("café".encode("latin-1"), "iso-8859-1") == "café"
    assert decode_bytes(b"plain", "x-no-such-charset") == "plain"
    assert decode_bytes("naïve".encode("cp1252"), "") == "naïve"


def test_bad_base64_and_truncated_parts_keep_what_can_be_read() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
        + base64.b64encode(b"hello world")[:-2]
        + b"!!@@\n--b\nContent-Type: text/plain\n\nsecond part, never closed"
    )
    parsed = parse(raw)
    assert "hello wor" in parsed.text
    assert "second part, never closed" in parsed.text


def test_only_max_bytes_are_read() -> None:
    huge = message("big", "start of text\n") + b"A" * (50 * 1024 * 1024)
    started = time.perf_counter()
    parsed = parse(huge)
    assert time.perf_counter() - started < 5  # generous: bounded work, not a benchmark
    assert parsed.truncated
    assert parsed.text.startswith("start of text")
    assert len(parsed.text) <= DEFAULT_MAX_BYTES


def test_absurd_nesting_is_bounded() -> None:
    depth = 5000
    raw = b"Content-Type: multipart/mixed; boundary=a0\n\n" + b"".join(
        b"--a%d\nContent-Type: multipart/mixed; boundary=a%d\n\n" % (i, i + 1) for i in range(depth)
    )
    parsed = parse(raw + b"--a5000\nContent-Type: text/plain\n\ndeep text\n")
    # Deeper than MAX_DEPTH: not followed, read as plain text (cut at MAX_TEXT_CHARS).
    assert parsed.text.startswith("--a") and len(parsed.text) == MAX_TEXT_CHARS


def test_html_reduction_is_linear_on_hostile_markup() -> None:
    for body in (b"<" * 200_000, b"<script" * 30_000, b"<!--" * 50_000, b"<a href=x" * 30_000):
        raw = b"Content-Type: text/html\n\n" + body
        started = time.perf_counter()
        parse(raw)
        assert time.perf_counter() - started < 5


def test_delivery_time_prefers_the_top_received_header() -> None:
    raw = (
        b"Received: from a by b; Tue, 01 Oct 2002 10:00:00 +0000\n"
        b"Received: from c by d; Mon, 30 Sep 2002 10:00:00 +0000\n"
        b"Date: Sun, 01 Jan 2034 00:00:00 +0000\n\nbody"
    )
    assert delivery_time(raw) == 1033466400.0
    assert delivery_time(b"Date: Sun, 01 Jan 2034 00:00:00 +0000\n\nx") == 2019686400.0
    assert delivery_time(b"Date: not a date\n\nx") is None


def test_every_shipped_sample_parses_with_text() -> None:
    for path in sorted(SAMPLES.glob("*/*.eml")):
        parsed = parse(path.read_bytes())
        assert parsed.subject, path
        assert len(parsed.text) > 100, path
        assert parsed.defects == 0, path


MANGLERS = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Transfer-Encoding: quoted-printable\n",
        b"Content-Type: text/html; charset=",
        b"Content-Type: message/rfc822\n",
        b"=?utf-8?b?",
        b"=?x-unknown?q?=FF=",
        b"--",
        b"\n\n",
        b"\x00",
        b"\xff\xfe",
        b"<a href='",
        b"<script>",
        b"filename*0*=utf-8''%",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(MANGLERS, st.binary(max_size=64)), max_size=40))
def test_parse_never_raises_on_mangled_input(chunks: list[bytes]) -> None:
    raw = b"".join(chunks)
    parsed = parse(raw)
    assert parsed.defects >= 0
    assert isinstance(parsed.text, str)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=2000))
def test_parse_never_raises_on_truncated_real_mail(noise: bytes, cut: int) -> None:
    raw = MULTIPART[:cut] + noise
    assert isinstance(parse(raw).subject, str)


@given(st.lists(st.sampled_from([b"\r", b"\n", b"a"]), max_size=12).map(b"".join))
@example(b"a\n\r\n\n")  # a CRLF blank line just before an LF one
@settings(max_examples=500)
def test_head_ends_at_the_first_empty_line_whatever_the_line_ends(data: bytes) -> None:
    # The plain definition: the first match of \r?\n\r?\n (split_head finds it faster).
    end = re.search(rb"\r?\n\r?\n", data)
    expected = (data, b"") if end is None else (data[: end.start()], data[end.end() :])
    assert _split_head(data) == expected


# -- hostile headers and charsets (issue 16) -------------------------------------------

_WORDS = st.sampled_from(
    ["=?utf-8?q?caf=C3=A9?=", "=?utf-8?b?w6k=?=", "=?iso-8859-1?q?na=EFve_x?=", "=?UTF-8?Q?a?=",
     "=?gb2312?b?vNu48Q==?=", "plain", "Re:", "(x)", " ", "  ", "=?", "?=", "=?a?q?x", "été"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS, max_size=8).map("".join))
@example("=?utf-8?q?a?= =?utf-8?q?b?=")
@example("=?utf-8?b?5Lu3?= =?utf-8?b?5qC8?=")
def test_encoded_words_decode_as_the_standard_library_does(text: str) -> None:
    """Our linear decoder gives the standard library's pieces on ASCII headers."""
    if not text.isascii():
        return  # there the standard library writes literal \\uXXXX escapes (see CHANGELOG)
    try:
        chunks = email.header.decode_header(text)
    except email.errors.HeaderParseError:
        return  # a word that does not decode: the library gives up on the whole field
    pieces = [c if isinstance(c, str) else decode_bytes(c, cs or "") for c, cs in chunks]
    expected = " ".join(" ".join(pieces).split())
    assert parse(f"Subject: {text}\r\n\r\nx".encode()).subject == expected


def test_non_text_codecs_are_not_charsets() -> None:
    for codec in ("rot13", "base64", "zlib", "hex", "bz2", "quopri", "uu", "idna", "punycode",
                  "unicode_escape", "raw_unicode_escape", "undefined"):  # fmt: skip
        raw = (
            f"Subject: Sale =?{codec}?q?=FF?=\r\n"
            f"Content-Type: text/plain; charset={codec}; x*={codec}''%FF\r\n\r\n"
        ).encode() + b"cheap pills \xff now"
        parsed = parse(raw)
        assert not parsed.unreadable, codec
        assert parsed.subject.startswith("Sale") and "cheap pills" in parsed.text, codec
        assert decode_bytes(b"caf\xe9", codec) == "café"  # cp1252, the safe fallback


def test_an_address_opening_with_a_thousand_parentheses_is_read() -> None:
    raw = b"From: " + b"(" * 1000 + b"x <a@b.example>\r\nSubject: still here\r\n\r\nbody text"
    parsed = parse(raw)
    assert not parsed.unreadable and parsed.subject == "still here" and parsed.text == "body text"
    assert parse(b"From: (a (b (c))) x@y.example\r\n\r\n").sender.address == "x@y.example"


def test_a_message_past_its_time_budget_is_decided_on_what_was_read() -> None:
    sample = (SAMPLES / "spam" / "01-prize.eml").read_bytes()
    parsed = parse(sample, budget=0.0)
    assert parsed.partial and parsed.subject.startswith("CONGRATULATIONS") and not parsed.text
    assert not parse(sample).partial


def test_a_message_that_cannot_be_read_says_so(parser_breaker: bytes) -> None:
    parsed = parse(parser_breaker + b"Subject: x\r\n\r\nbody")
    assert parsed.unreadable == "RecursionError"  # not an empty message that gets scored
    assert not parse(b"Subject: x\r\n\r\nbody").unreadable


def test_text_past_the_part_and_depth_limits_is_still_read() -> None:
    head = b'Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
    empty = b"--p\r\nContent-Type: text/plain\r\n\r\n\r\n" * 70
    last = b"--p\r\nContent-Type: text/plain\r\n\r\nhidden after seventy parts\r\n--p--\r\n"
    assert "hidden after seventy parts" in parse(head + empty + last).text
    nested = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(20)
    )
    deep = b"Subject: x\r\n" + nested + b"Content-Type: text/plain\r\n\r\nhidden twenty deep\r\n"
    assert "hidden twenty deep" in parse(deep).text
