"""Raw RFC 822 bytes in, a parsed message out. Pure: no I/O, and never raises.

Mail is hostile input. Everything here is written so that malformed MIME, bad
transfer encodings, unknown or lying charsets, NUL bytes, 8-bit headers, deep
nesting and truncation produce a best-effort `ParsedMessage` instead of an
exception, and so that the work done per message is bounded by construction:
only `max_bytes` of a message are looked at, each header field is cut to
`MAX_FIELD_BYTES` before it is decoded, every step is linear in its input
(RFC 2047 words are decoded here, not by the standard library, whose decoder is
quadratic on unterminated words), address parsing, MIME nesting and part counts
are bounded, and only text codecs are accepted as charsets. A time budget per
message is the last line of defence: past it, the parts not read yet are left
out and `ParsedMessage.partial` says so.

A field or part that cannot be decoded is decoded with a fallback or skipped,
and the rest is still read. A message that cannot be read at all (a bug here,
not a property of the mail) is never passed off as an empty one:
`ParsedMessage.unreadable` names the error, and callers leave such mail alone.
"""

from __future__ import annotations

import binascii
import codecs
import email.utils
import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_MAX_BYTES = 256 * 1024
MAX_PARTS = 64  # MIME parts parsed; the rest of an absurd tree is read as plain text
MAX_DEPTH = 16  # multipart nesting followed; deeper parts are read as plain text
MAX_TEXT_CHARS = 64 * 1024  # decoded text kept per message
MAX_LINKS = 200
MAX_FIELD_BYTES = 16 * 1024  # of each header field read; the longest in the corpora is 14 KB
MAX_SUBJECT = 2048  # characters of the decoded subject kept (the corpora's longest: 756)
MAX_ENCODED_WORDS = 64  # RFC 2047 words decoded per field (the corpora have at most 9)
MAX_ADDRESS_CHARS = 998  # RFC 5322's line limit; From/Reply-To are cut there before parsing
MAX_COMMENT_DEPTH = 8  # (nested (comments)) in an address deeper than this are removed first
DEFAULT_BUDGET = 1.0  # seconds of parsing per message; see `parse`

# The charsets mail may declare: text codecs only, by their `codecs.lookup` name. Python
# also looks up non-text codecs (rot13, base64, zlib, hex, bz2, quopri, uu) and its own
# (idna, punycode, unicode_escape, undefined, ...): a name outside this list is unknown.
_TEXT_CODEC_NAMES = """
    ascii big5 big5hkscs cp037 cp1006 cp1026 cp1125 cp1140 cp1250 cp1251 cp1252 cp1253
    cp1254 cp1255 cp1256 cp1257 cp1258 cp273 cp424 cp437 cp500 cp720 cp737 cp775 cp850
    cp852 cp855 cp856 cp857 cp858 cp860 cp861 cp862 cp863 cp864 cp865 cp866 cp869 cp874
    cp875 cp932 cp949 cp950 euc_jis_2004 euc_jisx0213 euc_jp euc_kr gb18030 gb2312 gbk
    hp-roman8 hz iso2022_jp iso2022_jp_1 iso2022_jp_2 iso2022_jp_2004 iso2022_jp_3
    iso2022_jp_ext iso2022_kr iso8859-1 iso8859-10 iso8859-11 iso8859-13 iso8859-14
    iso8859-15 iso8859-16 iso8859-2 iso8859-3 iso8859-4 iso8859-5 iso8859-6 iso8859-7
    iso8859-8 iso8859-9 johab koi8-r koi8-t koi8-u kz1048 mac-arabic mac-cyrillic mac-greek
    mac-iceland mac-latin2 mac-roman mac-turkish ptcp154 shift_jis shift_jis_2004
    shift_jisx0213 tis-620 utf-16 utf-16-be utf-16-le utf-32 utf-32-be utf-32-le utf-7
    utf-8 utf-8-sig"""
TEXT_CODECS = frozenset(_TEXT_CODEC_NAMES.split())

# Header fields the model may learn from. This is an allow-list on purpose:
# trace headers (Received, Delivered-To, Return-Path, X-Original-To), mail-client
# state (X-Keywords, X-Status), list plumbing (List-*, Precedence) and every
# verdict written by another filter (X-Spam-*, X-MailScanner*, X-Rspamd-*, ...)
# describe how a corpus was collected or what someone else decided, not the
# message. Threading headers (In-Reply-To, References) and User-Agent are left
# out too: in the shipped corpora they mark how ham was *selected*.
LEARNABLE_HEADERS = (
    "content-type",
    "content-transfer-encoding",
    "x-mailer",
    "mime-version",
    "importance",
    "x-priority",
)

# Tags other filters put into subjects. They are verdicts, not content.
_VERDICT_SUBJECT_TAG = re.compile(
    r"^\s*(?:\[\s*spam\s*\]|\*{2,}\s*spam\s*\*{2,}|\{\s*spam\??\s*\}|\(\s*spam\s*\))\s*", re.I
)
_MBOX_FROM_LINE = re.compile(rb"\AFrom [^\n]*\n")
_URL_IN_TEXT = re.compile(r"(?:https?://|www\.)[^\s<>\"'()\[\]{}]{2,512}", re.I)
_HREF = re.compile(r"""\b(?:href|src|action)\s*=\s*["']?([^"'\s<>]{1,1024})""", re.I)
_SCRIPT_OR_STYLE_OPEN = re.compile(r"<(script|style|head)\b", re.I)
_TAG = re.compile(r"<[^<>]{0,2048}>")
_BLOCK_TAG = re.compile(r"<(?:br|/p|/div|/tr|/li|/h\d|p|div|tr|li|hr)\b[^<>]{0,2048}>", re.I)
# Runs of blanks become one space. A lone space is left alone rather than replaced by
# itself: same result, without a match per word.
_SPACES = re.compile(r"[ \t\r\f\v]{2,}|[\t\r\f\v]")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True, slots=True)
class Address:
    name: str = ""
    address: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] if "@" in self.address else ""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    subject: str = ""
    sender: Address = field(default_factory=Address)
    reply_to: Address = field(default_factory=Address)
    text: str = ""
    has_html: bool = False
    html: tuple[str, ...] = ()  # the markup of the HTML parts, for `links`
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    message_id: str = ""
    list_id: str = ""
    truncated: bool = False
    defects: int = 0
    partial: bool = False  # the time budget ran out: parts after that were not read
    unreadable: str = ""  # why nothing could be read (an error's name); "" when read

    @property
    def links(self) -> tuple[str, ...]:
        """Link targets in the HTML, then URLs written in the text (found on demand:
        only the ``urls`` and ``meta`` channels need them)."""
        found = [link for markup in self.html for link in _HREF.findall(markup)]
        found += _URL_IN_TEXT.findall(self.text)
        return tuple(dict.fromkeys(found))[:MAX_LINKS]

    @property
    def link_domains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for d in map(url_domain, self.links) if d))


def parse(
    raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES, budget: float = DEFAULT_BUDGET
) -> ParsedMessage:
    """Parse at most `max_bytes` of `raw`. Never raises on any input.

    Parts are read until `budget` seconds have passed (checked before each part;
    the header is always read); the rest is left out and `partial` is set. Every
    step being linear, only a starved machine should ever reach the default.
    A message that cannot be read at all comes back with `unreadable` set.
    """
    try:
        return _parse(raw, max_bytes, time.perf_counter() + budget)
    except Exception as exc:  # noqa: BLE001 - last line of defence: hostile input must not escape
        return ParsedMessage(
            truncated=len(raw) > max_bytes, defects=1, unreadable=type(exc).__name__
        )


def _parse(raw: bytes, max_bytes: int, deadline: float) -> ParsedMessage:
    data = _MBOX_FROM_LINE.sub(b"", raw[:max_bytes], count=1)
    top = _Part.from_bytes(data)

    texts: list[str] = []
    markups: list[str] = []
    attachments: list[Attachment] = []
    has_html = False
    defects = 0
    partial = False
    for part in _leaves(top):
        if time.perf_counter() > deadline:
            partial = True
            break
        defects += part.defects
        ctype = part.content_type
        filename = part.filename()
        if filename or not ctype.startswith("text/"):
            attachments.append(Attachment(filename, ctype))
        elif ctype == "text/html":
            has_html = True
            markup = part.text()
            markups.append(markup)
            texts.append(html_to_text(markup))
        else:
            texts.append(part.text())

    text = "\n".join(t for t in texts if t)[:MAX_TEXT_CHARS].replace("\x00", "")
    fields = top.fields
    return ParsedMessage(
        subject=_VERDICT_SUBJECT_TAG.sub("", header_text(fields.get("subject")))[:MAX_SUBJECT],
        sender=_address(fields.get("from")),
        reply_to=_address(fields.get("reply-to")),
        text=text,
        has_html=has_html,
        html=tuple(markups),
        attachments=tuple(attachments),
        headers=tuple(
            (name, header_text(fields[name])) for name in LEARNABLE_HEADERS if name in fields
        ),
        message_id=header_text(fields.get("message-id")),
        list_id=header_text(fields.get("list-id")),
        truncated=len(raw) > max_bytes,
        defects=defects,
        partial=partial,
    )


# The header fields anything here reads; the others (most of a header: Received,
# DKIM, ...) are skipped by the regular expression that finds fields.
_USED_FIELDS = frozenset(
    (
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "subject",
        "from",
        "reply-to",
        "message-id",
        "list-id",
        *LEARNABLE_HEADERS,
    )
)
# A field starts a line: the pattern starts with the newline (the header is searched
# with one put in front), which lets the regex engine jump from line to line.
_FIELD = re.compile(
    rb"\n(%b)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)"
    % b"|".join(f.encode() for f in sorted(_USED_FIELDS)),
    re.I,
)
_FOLD = re.compile(r"\r?\n[ \t]+")
_PARAM = re.compile(
    r"""(?:^|;)\s*([!#-'*+.0-9A-Z^-~-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)""", re.I
)
_NOT_BASE64 = bytes(
    set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
)


class _Part:
    """One MIME entity: its header fields (first occurrence wins) and raw body."""

    __slots__ = ("body", "content_type", "defects", "fields", "params")

    def __init__(self, fields: dict[str, str], body: bytes, default_type: str) -> None:
        self.fields = fields
        self.body = body
        self.defects = 0
        ctype, _, rest = fields.get("content-type", "").partition(";")
        ctype = ctype.strip().lower()
        if "/" not in ctype:
            ctype = default_type
        self.content_type = ctype
        self.params = _params(rest)

    @classmethod
    def from_bytes(cls, data: bytes, default_type: str = "text/plain") -> _Part:
        if data[:1] == b"\n" or data[:2] == b"\r\n":
            head, body = b"", data.lstrip(b"\r")[1:]
        else:
            head, body = _split_head(data)
        fields: dict[str, str] = {}
        for match in _FIELD.finditer(b"\n" + head):
            name = match.group(1).decode("ascii").lower()
            if name not in fields:
                value = match.group(2)[:MAX_FIELD_BYTES].decode("ascii", "surrogateescape")
                fields[name] = (_FOLD.sub(" ", value) if "\n" in value else value).strip()
        return cls(fields, body, default_type)

    def children(self) -> list[_Part]:
        if self.content_type == "message/rfc822":
            return [_Part.from_bytes(self.decoded())]
        boundary = self.params.get("boundary", "").encode("ascii", "surrogateescape")
        if not self.content_type.startswith("multipart/") or not boundary:
            return []
        default = "message/rfc822" if self.content_type == "multipart/digest" else "text/plain"
        return [_Part.from_bytes(chunk, default) for chunk in _split_multipart(self.body, boundary)]

    def decoded(self) -> bytes:
        encoding = self.fields.get("content-transfer-encoding", "").strip().lower()
        body = self.body
        try:
            if encoding == "base64":
                body = body.translate(None, _NOT_BASE64)
                body = body[: len(body) - len(body) % 4] if len(body) % 4 == 1 else body
                return binascii.a2b_base64(body + b"=" * (-len(body) % 4))
            if encoding == "quoted-printable":
                return binascii.a2b_qp(body)
        except binascii.Error:
            self.defects += 1
        return body

    def text(self) -> str:
        return decode_bytes(self.decoded(), self.params.get("charset", ""))

    def filename(self) -> str:
        disposition = _params(self.fields.get("content-disposition", "").partition(";")[2])
        return header_text(disposition.get("filename") or self.params.get("name", ""))


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Header and body, split at the first empty line (LF or CRLF line ends, even mixed)."""
    end = data.find(b"\n\n")
    crlf = data.find(b"\n\r\n", 0, len(data) if end < 0 else end + 2)
    if crlf >= 0:
        end, gap = crlf, 3
    elif end >= 0:
        gap = 2
    else:
        return data, b""
    start = end - 1 if end > 0 and data[end - 1 : end] == b"\r" else end
    return data[:start], data[end + gap :]


def _params(text: str) -> dict[str, str]:
    """Content-Type/-Disposition parameters, with RFC 2231 continuations and charsets."""
    params: dict[str, str] = {}
    for raw_name, raw_value in _PARAM.findall(text):
        value = raw_value
        if value.startswith('"'):
            value = value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:]
            value = value.replace('\\"', '"')
        name, star, section = raw_name.lower().partition("*")
        if not star:
            params.setdefault(name, value)
            continue
        # RFC 2231: name*=charset'lang'%xx, or sections name*0*=..., name*1=...
        if section in ("", "0*") and value.count("'") >= 2:
            charset, _lang, encoded = value.split("'", 2)
            value = unquote(encoded, encoding=_codec(charset) or "utf-8", errors="replace")
        elif section.endswith("*") or not section:
            value = unquote(value, errors="replace")
        params[name] = params.get(name, "") + value
    return params


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The body parts between `--boundary` lines, tolerating a missing close or preamble."""
    delimiter = b"--" + boundary
    chunks: list[bytes] = []
    start = -1
    pos = 0 if body.startswith(delimiter) else body.find(b"\n" + delimiter)
    while pos >= 0 and len(chunks) < MAX_PARTS:
        if body[pos : pos + 1] == b"\n":
            pos += 1
        if start >= 0:
            chunks.append(body[start:pos].removesuffix(b"\n").removesuffix(b"\r"))
        after = pos + len(delimiter)
        if body[after : after + 2] == b"--":
            return chunks
        line_end = body.find(b"\n", after)
        if line_end < 0:
            return chunks
        start = line_end + 1
        pos = body.find(b"\n" + delimiter, start - 1)
    if start >= 0 and len(chunks) < MAX_PARTS:
        chunks.append(body[start:])  # truncated: no closing delimiter
    elif start >= 0:  # past the limit: the other parts as one, without a header (plain text)
        chunks.append(b"\n" + body[start:])
    return chunks


def _leaves(top: _Part) -> Iterator[_Part]:
    """Depth-first over the MIME tree, iteratively, bounded in depth and count.

    Past the bounds nothing is hidden: a part nested too deep, and every part not
    visited once `MAX_PARTS` were, is read as plain text, its bytes unparsed (so
    spam cannot hide behind 64 empty parts or 17 levels of nesting).
    """
    stack: list[tuple[_Part, int]] = [(top, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        container = part.content_type.startswith(("multipart/", "message/"))
        if seen >= MAX_PARTS or depth >= MAX_DEPTH:
            if container:
                yield _Part({}, part.decoded(), "text/plain")
            elif part.content_type.startswith("text/"):
                yield part
            continue
        seen += 1
        children = part.children()
        if children:
            stack.extend((child, depth + 1) for child in reversed(children))
        elif not part.content_type.startswith("multipart/"):
            yield part


_ASCIIISH = {"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "default", "unknown"}


def decode_bytes(data: bytes, charset: str) -> str:
    """Decode with the declared charset, distrusting it when the bytes disagree.

    Order: UTF-8 when the declaration is absent or plain ASCII (the most common
    lie), then the declared charset strictly, then UTF-8 strictly, then the
    declared charset (or cp1252) with replacement characters.
    """
    charset = charset.strip().lower()
    declared = _codec(charset)
    attempts = ["utf-8"] if charset in _ASCIIISH or declared is None else [declared, "utf-8"]
    for codec in attempts:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    fallback = declared if declared and charset not in _ASCIIISH else "cp1252"
    try:
        return data.decode(fallback, errors="replace")
    except Exception:  # noqa: BLE001 - a text codec that fails anyway: cp1252 never does
        return data.decode("cp1252", errors="replace")


def _codec(charset: str) -> str | None:
    """The codec of a charset name, if it is a text codec (`TEXT_CODECS`); else None."""
    if not charset or len(charset) > 64:
        return None
    charset = {"iso-8859-8-i": "iso-8859-8", "ks_c_5601-1987": "cp949", "gb2312": "gb18030"}.get(
        charset, charset
    )
    try:
        name = codecs.lookup(charset).name
    except (LookupError, ValueError):
        return None
    return name if name in TEXT_CODECS else None


def header_text(value: object) -> str:
    """Decode a header value (RFC 2047 words, raw 8-bit bytes) into one line of text."""
    if not isinstance(value, str):
        return ""
    # Raw 8-bit header bytes arrive as surrogate escapes (most are UTF-8); text
    # that is already decoded (RFC 2231 parameters) round-trips through UTF-8.
    if value.isascii() and "=?" not in value:  # the common case: nothing to decode
        return " ".join(value.split())
    raw = value.encode("utf-8", "surrogateescape")
    text = decode_bytes(raw, "")
    if "=?" not in text:
        return " ".join(text.split())
    return " ".join(" ".join(_decode_words(text)).split())


# The start of an RFC 2047 encoded word, `=?charset?Q?` or `=?charset?B?`, as the
# standard library's decoder finds it; the word ends at the next `?=`.
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([qQbB])\?")
_QP_ESCAPE = re.compile(r"=[a-fA-F0-9]{2}", re.ASCII)


def _decode_words(text: str) -> list[str]:
    """The pieces of a header with RFC 2047 encoded words, decoded in linear time.

    The same pieces as `email.header.decode_header`, whose lazy regex rescans the
    rest of the line for each unterminated word (quadratic): here each word's end
    is found once with `str.find`, and once no `?=` follows, no later word can
    end either. Whitespace between encoded words is dropped; adjacent words in
    the same charset are joined before decoding (a character may be split across
    them). A word that does not decode is kept as written, and so is everything
    after the first `MAX_ENCODED_WORDS` words.
    """
    # (text, None, text) for plain text; (encoded text, (encoding, charset), as written)
    words: list[tuple[str, tuple[str, str] | None, str]] = []
    found = 0
    for line in text.splitlines():
        pos = 0
        while True:
            match = _ENCODED_WORD.search(line, pos) if found < MAX_ENCODED_WORDS else None
            end = line.find("?=", match.end()) if match else -1
            plain = line[pos : match.start() if match and end >= 0 else len(line)]
            if pos == 0:
                plain = plain.lstrip()
            if plain:
                words.append((plain, None, plain))
            if match is None or end < 0:
                break
            charset = match.group(1).lower().partition("*")[0]  # RFC 2231: charset*language
            kind = (match.group(2).lower(), charset)
            words.append((line[match.end() : end], kind, line[match.start() : end + 2]))
            found += 1
            pos = end + 2
    pieces: list[str] = []
    run: list[bytes] = []  # adjacent encoded words in one charset, decoded together
    run_charset = ""
    for i, (word, encoded, written) in enumerate(words):
        between_words = 0 < i < len(words) - 1 and words[i - 1][1] and words[i + 1][1]
        if encoded is None and between_words and word.isspace():
            continue
        data = None if encoded is None else _decode_word(word, encoded[0])
        if run and (data is None or encoded is None or encoded[1] != run_charset):
            pieces.append(decode_bytes(b"".join(run), run_charset))
            run = []
        if data is None:
            pieces.append(written)
        else:
            run.append(data)
            run_charset = encoded[1] if encoded else ""
    if run:
        pieces.append(decode_bytes(b"".join(run), run_charset))
    return pieces


def _decode_word(encoded: str, encoding: str) -> bytes | None:
    """The bytes of an encoded word's text (Q or B), or None if they do not decode."""
    if encoding == "q":
        text = _QP_ESCAPE.sub(lambda m: chr(int(m.group()[1:], 16)), encoded.replace("_", " "))
        return text.encode("raw-unicode-escape")
    data = encoded.encode("raw-unicode-escape")
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return None


def _address(value: object) -> Address:
    text = header_text(value)[:MAX_ADDRESS_CHARS]
    if not text:
        return Address()
    simple = _SIMPLE_ADDRESS.fullmatch(text)
    if simple:  # `addr`, `<addr>` or `Name <addr>`: no need for the full RFC 5322 parser
        name, address = (simple.group(1) or "").strip(), simple.group(2) or simple.group(3)
    else:
        # The standard parser recurses once per nested comment: deep ones go first.
        if _comment_depth(text) > MAX_COMMENT_DEPTH:
            text = _without_comments(text)
        try:
            name, address = email.utils.parseaddr(text)
        except (RecursionError, ValueError, IndexError):
            name, address = text, ""
    address = address.strip().lower()
    if "@" not in address:
        return Address(name=name or text, address="")
    return Address(name=name.strip().strip('"'), address=address)


def _comment_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")" and depth:
            depth -= 1
    return deepest


def _without_comments(text: str) -> str:
    """`text` with every (comment) removed, nested or not (and an unclosed one to the end)."""
    out: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(char)
    return "".join(out)


_ADDR_SPEC = r'[^\s"<>,;:()\\@\[\]]+@[^\s"<>,;:()\\@\[\]]+'
_SIMPLE_ADDRESS = re.compile(rf'([^"<>,;:()\\@\[\]]*?)\s*<({_ADDR_SPEC})>|({_ADDR_SPEC})')


def html_to_text(markup: str) -> str:
    """Reduce HTML to its visible text, in linear time."""
    markup = _drop_invisible(markup)
    markup = _BLOCK_TAG.sub("\n", markup)
    markup = _TAG.sub(" ", markup)
    text = html.unescape(markup)
    text = _SPACES.sub(" ", text)
    return _BLANK_LINES.sub("\n", text).strip()


def _drop_invisible(markup: str) -> str:
    """Remove comments and script/style/head elements.

    Written as forward scans rather than one lazy regex, because a regex like
    `<script.*?</script>` is quadratic on input with many unclosed openers.
    """
    out: list[str] = []
    pos = 0
    n = len(markup)
    comment = markup.find("<!--")
    element = _SCRIPT_OR_STYLE_OPEN.search(markup)
    while pos < n:
        # The next of each is searched for again only once `pos` has passed it.
        if 0 <= comment < pos:
            comment = markup.find("<!--", pos)
        if element is not None and element.start() < pos:
            element = _SCRIPT_OR_STYLE_OPEN.search(markup, pos)
        starts = [s for s in (comment, element.start() if element else -1) if s >= 0]
        if not starts:
            out.append(markup[pos:])
            break
        start = min(starts)
        out.append(markup[pos:start])
        if start == comment:
            end = markup.find("-->", start + 4)
            pos = n if end < 0 else end + 3
        elif element is not None:
            close = re.compile(rf"</{element.group(1)}\s*>", re.I).search(markup, element.end())
            pos = n if close is None else close.end()
    return " ".join(out)


_RECEIVED = re.compile(rb"^Received:(.*(?:\r?\n[ \t].*)*)", re.M | re.I)
_DATE = re.compile(rb"^Date:(.*)", re.M | re.I)


def delivery_time(raw: bytes) -> float | None:
    """When the message was delivered (POSIX seconds): the date of the topmost
    Received header, else the Date header; None if neither parses."""
    head = _split_head(raw[:DEFAULT_MAX_BYTES])[0]
    candidates = []
    received = _RECEIVED.search(head)
    if received:
        candidates.append(received.group(1).rpartition(b";")[2])
    date = _DATE.search(head)
    if date:
        candidates.append(date.group(1))
    for value in candidates:
        try:
            when = email.utils.parsedate_to_datetime(value.decode("ascii", "replace").strip())
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        if when is not None:
            try:
                return when.timestamp()
            except (OverflowError, OSError, ValueError):
                continue
    return None


def url_domain(url: str) -> str:
    """The lower-cased host of a link, without `www.`; "" when there is none."""
    if url[:4].lower() == "www.":
        url = "http://" + url
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    host = host.rstrip(".")
    return host[4:] if host.startswith("www.") else host
