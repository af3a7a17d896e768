"""Hostile mail, generated: the tricks an attacker plays on a parser, by kind.

`TRICKS` change a given message (a spam sample) the way an attacker would to
blind the parser (a header, a charset, the MIME structure) while leaving what a
reader sees; `KINDS`
make a message of about a given size built to cost the parser as much as
possible. Used by the hostile-mail tests and by `bench/hostile.py`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

# Python looks these up as codecs, but they are not text encodings (or are
# Python's own): as a charset each one used to make a message unreadable.
NON_TEXT_CODECS = (
    "rot13", "base64", "zlib", "hex", "bz2", "quopri", "uu", "idna", "punycode",
    "unicode_escape", "raw_unicode_escape", "undefined",
)  # fmt: skip

Trick = Callable[[bytes], bytes]
Kind = Callable[[random.Random, int], bytes]


def _field(raw: bytes, name: bytes, value: Callable[[bytes], bytes]) -> bytes:
    """`raw` with the first `name:` field's value replaced by value(old value)."""
    pattern = re.compile(rb"^(" + name + rb":[ \t]*)(.*?)(\r?\n)", re.I | re.M)
    match = pattern.search(raw)
    if match is None:
        return name + b": " + value(b"") + b"\r\n" + raw
    return raw[: match.start(2)] + value(match.group(2)) + raw[match.end(2) :]


def _body_charset(codec: str) -> Trick:
    """The text part declared in `codec`, with one byte that is not UTF-8 in its body."""

    def trick(raw: bytes) -> bytes:
        raw = _field(raw, b"Content-Type", lambda v: re.sub(rb"charset=[^;\s]*", b"", v).strip())
        raw = _field(raw, b"Content-Type", lambda v: v + b"; charset=" + codec.encode())
        head, sep, body = (
            raw.partition(b"\n\n") if b"\r\n\r\n" not in raw else raw.partition(b"\r\n\r\n")
        )
        return head + sep + b"\xff " + body

    return trick


def _word_charset(codec: str) -> Trick:
    """An RFC 2047 word in `codec` holding a byte that is not UTF-8, added to the Subject."""
    return lambda raw: _field(raw, b"Subject", lambda v: v + b" =?" + codec.encode() + b"?q?=FF?=")


def _param_charset(codec: str) -> Trick:
    """An RFC 2231 parameter in `codec` with a byte that is not UTF-8, on the Content-Type."""
    return lambda raw: _field(
        raw, b"Content-Type", lambda v: v + b"; x-note*=" + codec.encode() + b"''%FF"
    )


def _from_parens(raw: bytes) -> bytes:
    """A From field opening with a thousand '(' (the address parser recursed once each)."""
    return _field(raw, b"From", lambda v: b"(" * 1000 + v)


def _subject_words(raw: bytes) -> bytes:
    """32 KB of unterminated encoded words after the Subject (1.3 s for the old decoder)."""
    return _field(raw, b"Subject", lambda v: v + b" " + b"=?a?q?x " * 4096)


def _split(raw: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    """Header lines other than Content-*/MIME-Version, the Content-* lines, the body."""
    raw = raw.replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    lines = re.split(rb"\n(?![ \t])", head)
    content = [line for line in lines if line.lower().startswith(b"content-")]
    rest = [line for line in lines if not line.lower().startswith((b"content-", b"mime-version"))]
    return rest, content, body


def _nested(raw: bytes) -> bytes:
    """The message's content wrapped in 20 levels of multipart (the parser follows 16)."""
    rest, content, body = _split(raw)
    inner = b"\n".join(content) + b"\n\n" + body
    for i in reversed(range(20)):
        open_ = b'Content-Type: multipart/mixed; boundary="n%d"\n\n--n%d\n' % (i, i)
        inner = open_ + inner + b"\n--n%d--\n" % i
    return b"\n".join([*rest, b"MIME-Version: 1.0", inner])


def _after_empty_parts(raw: bytes) -> bytes:
    """The message's content as part 71 of a multipart (the parser looks at 64)."""
    rest, content, body = _split(raw)
    empty = b"--p\nContent-Type: text/plain\n\n\n" * 70
    return (
        b"\n".join(
            [*rest, b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="p"', b""]
        )
        + b"\n"
        + empty
        + b"--p\n"
        + b"\n".join(content)
        + b"\n\n"
        + body
        + b"\n--p--\n"
    )


TRICKS: dict[str, Trick] = {
    **{f"body-charset-{c}": _body_charset(c) for c in NON_TEXT_CODECS},
    **{f"word-charset-{c}": _word_charset(c) for c in NON_TEXT_CODECS},
    **{f"param-charset-{c}": _param_charset(c) for c in NON_TEXT_CODECS},
    "from-parens": _from_parens,
    "subject-unterminated-words": _subject_words,
    "nested-20-deep": _nested,
    "after-70-empty-parts": _after_empty_parts,
}


# -- messages built to cost as much as possible, of about `size` bytes ---------------


def _mail(headers: list[str], body: bytes) -> bytes:
    return "\r\n".join(headers).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


def _unterminated_words(rng: random.Random, size: int) -> bytes:
    return _mail([f"Subject: {_repeat('=?a?q?x ', size)}"], b"body")


def _unterminated_words_everywhere(rng: random.Random, size: int) -> bytes:
    run = _repeat("=?a?q?x ", size // 7)
    return _mail(
        [
            f"Subject: {run}",
            f"From: {run} <a@b.example>",
            f"Reply-To: {run}",
            f"Message-ID: <{run}>",
            f"List-Id: {run}",
            "MIME-Version: 1.0",
            f'Content-Type: text/plain; name="{run}"',
            f'Content-Disposition: attachment; filename="{run}"',
        ],
        b"body",
    )


def _terminated_words(rng: random.Random, size: int) -> bytes:
    words = " ".join(
        f"=?utf-8?b?{rng.choice(['4pyTIA==', 'w6k=', '5Lu35qC8'])}?=" for _ in range(size // 16)
    )
    return _mail([f"Subject: {words}"], b"body")


def _questions(rng: random.Random, size: int) -> bytes:
    return _mail([f"Subject: {_repeat('=?=?', size)}", f"From: {_repeat('?=', size // 4)}"], b"x")


def _parens(rng: random.Random, size: int) -> bytes:
    return _mail([f"From: {'(' * (size // 2)}a@b.example{')' * (size // 2)}"], b"x")


def _address_list(rng: random.Random, size: int) -> bytes:
    return _mail(["From: " + _repeat('"x, y" <a@b.example>, ', size)], b"x")


def _quoted_address(rng: random.Random, size: int) -> bytes:
    return _mail(["From: " + '"' + _repeat("\\\\\\(", size) + " <a@b.example>"], b"x")


def _charset(codec: str) -> Kind:
    def kind(rng: random.Random, size: int) -> bytes:
        text = rng.randbytes(size - 200)
        return _mail(
            [
                f"Subject: =?{codec}?q?=FF=00?=",
                "MIME-Version: 1.0",
                f"Content-Type: text/plain; charset={codec}; x*={codec}''%FF%00",
            ],
            text,
        )

    return kind


def _deep(rng: random.Random, size: int) -> bytes:
    depth = size // 60
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    return b"Subject: deep\r\n" + head.encode() + b"\r\nspam words here\r\n"


def _many_parts(rng: random.Random, size: int) -> bytes:
    part = "--p\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return _mail(
        ["Subject: parts", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="p"'],
        (_repeat(part, size) + "--p--").encode(),
    )


def _many_rfc822(rng: random.Random, size: int) -> bytes:
    unit = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    return (unit * (size // len(unit))).encode() + b"x"


def _huge_field(rng: random.Random, size: int) -> bytes:
    words = " ".join(rng.choice(["free", "money", "now", "click", "win"]) for _ in range(size // 5))
    return _mail([f"Subject: {words}"], b"x")


def _many_fields(rng: random.Random, size: int) -> bytes:
    return _repeat("Subject: x\r\nX-H: v\r\n Folded\r\n", size).encode() + b"\r\nbody"


def _params(rng: random.Random, size: int) -> bytes:
    params = "".join(f"; p*{i}*=utf-8''%E2%9C%93" for i in range(size // 24))
    return _mail([f"Content-Type: text/plain{params}"], b"x")


def _list_id(rng: random.Random, size: int) -> bytes:
    name = "a" * min(size // 4, 16000) + "b"
    return _mail([f"List-Id: <{name}.example>", f"Subject: [{name}]"], b"a" * (size // 2))


def _html_unclosed(rng: random.Random, size: int) -> bytes:
    markup = _repeat("<div <a href=", size // 2) + _repeat("<!--<script>", size // 2)
    return _mail(["Content-Type: text/html"], markup.encode())


def _urls(rng: random.Random, size: int) -> bytes:
    return _mail(["Subject: links"], _repeat("http://www.a.example/x ", size).encode())


def _base64_garbage(rng: random.Random, size: int) -> bytes:
    return _mail(["Content-Transfer-Encoding: base64"], rng.randbytes(size - 100))


def _nul_and_8bit(rng: random.Random, size: int) -> bytes:
    noise = rng.randbytes(size // 2 - 20)
    return b"Subject: " + noise.replace(b"\n", b" ") + b"\r\n\r\n" + noise


def _random_words(rng: random.Random, size: int) -> bytes:
    alphabet = "ａｂｃ价格 ΣσςÉé\u200b\u00a0abc012!$"
    text = "".join(rng.choice(alphabet) for _ in range(size // 3))
    return _mail(
        ["Content-Type: text/plain; charset=utf-8", f"Subject: {text[:2000]}"], text.encode()
    )


_SOUP = (
    "=?", "?=", "?", "(", ")", "<", ">", '"', "\\", "@", ",", ";", ":", "=?utf-8?b?", "=?x?q?",
    "=?utf-8?q?=E2", "<a href=", "<!--", "-->", "<script>", "</script>", "http://", "www.",
    "_" * 12, "re:", " ", "\r\n ", "%", "*", "'", "a", "é", "价", "&amp;", "&#", "\t", "=", "--",
    "via ", "[", "]", "\x00",
)  # fmt: skip


def _soup(rng: random.Random, size: int) -> bytes:
    """Every field the parser reads and the body, made of the characters its
    regular expressions and parsers care about, in random runs."""
    pieces = [rng.choice(_SOUP) for _ in range(8)]

    def run(n: int) -> str:
        return "".join(rng.choice(pieces) for _ in range(n // 3))

    fields = ("Subject", "From", "Reply-To", "List-Id", "Message-ID", "Content-Disposition")
    headers = [f"{name}: {run(size // 16)}" for name in fields]
    headers.append(f"Content-Type: {rng.choice(['text/html', 'text/plain'])}; {run(size // 16)}")
    return _mail(headers, run(size // 2).encode("utf-8", "surrogateescape"))[:size]


KINDS: dict[str, Kind] = {
    "unterminated-words": _unterminated_words,
    "unterminated-words-every-field": _unterminated_words_everywhere,
    "encoded-words": _terminated_words,
    "question-marks": _questions,
    "from-parens": _parens,
    "address-list": _address_list,
    "quoted-address": _quoted_address,
    **{f"charset-{c}": _charset(c) for c in NON_TEXT_CODECS},
    "deep-nesting": _deep,
    "many-parts": _many_parts,
    "many-rfc822": _many_rfc822,
    "huge-field": _huge_field,
    "many-fields": _many_fields,
    "rfc2231-params": _params,
    "long-list-id": _list_id,
    "html-unclosed": _html_unclosed,
    "urls": _urls,
    "base64-garbage": _base64_garbage,
    "nul-and-8bit": _nul_and_8bit,
    "random-unicode": _random_words,
    "punctuation-soup": _soup,
}
