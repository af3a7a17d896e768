"""Parsed message in, model input out. Pure.

A message becomes channels of tokens; the model hashes and weighs each channel
on its own (see `model.py`):

* ``subject``: words and word pairs, reply/forward prefixes and list tags removed;
* ``body``: words of the visible text (URLs included), with mailing-list
  footers removed (word pairs measured no better here, at twice the cost);
* ``meta``: structure: content types, attachments, allow-listed header fields,
  counts in coarse buckets;
* ``sender``: From and Reply-To domains;
* ``urls``: the domains and top-level domains that links point to.

The shipped model uses ``subject``, ``body`` and ``sender``: `bench/ablation.py`
measured that ``meta`` and ``urls`` raise accuracy inside one corpus but lower
it on mail from other years (they learn who sent a collection, not what spam
is), while ``sender`` raises it both ways.

Mailing-list plumbing is neutralised on purpose: a list's name, subject tag and
footer say which list the mail came through, not whether it is spam, and the
shipped corpora would otherwise teach exactly that.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from spamd.core.message import ParsedMessage

FEATURE_VERSION = 3  # 2: tokens hashed with CRC-32; 3: body words without pairs, CJK pairs
MAX_BODY_CHARS = 20_000  # enough to decide; keeps scoring time flat for long mail
CHANNELS = ("subject", "body", "meta", "sender", "urls")
DEFAULT_CHANNELS = ("subject", "body", "sender")  # the shipped model's; see bench/ablation.py

_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|tr|rif|odp)\s*(?:\[\d+\])?\s*:\s*)+", re.I
)
# A list's name is its List-Id's first label (at most 63 characters, RFC 2919/1035): a
# longer one is no list's, and matching it in a body would cost length x length.
_LIST_NAME = re.compile(r"<([^.<>@\s]{1,63})(?![^.<>@\s])")
_VIA_LIST = re.compile(r"\s+via\s+\S+$", re.I)
# Where list managers append their footer; everything from there on is dropped.
_LIST_FOOTER = re.compile(
    r"^_{10,}\s*\n[^\n]{0,200}(?:mailing list|@)"
    r"|^To unsubscribe(?: from this group)?,? send an? e-?mail to"
    r"|^You received this message because you are subscribed to"
    r"|^-=-=-=-=-=-=-=-=-=-=-=-\s*\nGroups\.io Links",
    re.I | re.M,
)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# A token is a run of word characters or one of a few symbols that carry meaning
# in spam. CJK scripts have no spaces: a run of ideographs/kana becomes its
# overlapping character pairs. Text without CJK takes the fast path (`_token_chars`).
_SYMBOLS = "$€£!%"
_WORD_OR_CJK = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+|[{re.escape(_SYMBOLS)}]")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_CJK_RUN = re.compile(rf"[{_CJK}]{{2,}}")
_DIGITS = re.compile(r"\d")


def _token_chars(ch: str) -> str:
    """What a character becomes before a text is split into tokens: lower-cased if
    it is a word character, 0 if a digit, set apart if a symbol, else a space. The
    same tokens as `_WORD_OR_CJK` on text without CJK, without a regex pass."""
    if ch in _SYMBOLS:
        return f" {ch} "
    return "".join(
        "0" if c.isdecimal() else c if c.isalnum() or c == "_" else " " for c in ch.lower()
    )


# Characters mapped so far (all of ASCII at first), for `str.translate`. Bounded:
# past the limit, text with characters not seen yet takes the regex path.
_TOKEN_CHARS = {c: _token_chars(chr(c)) for c in range(128)}
_TOKEN_CHARS_MAX = 20_000
_CAPITAL_SIGMA = "\u03a3"  # the one character whose lower case depends on its neighbours


@dataclass(frozen=True, slots=True)
class Counted:
    """A channel's distinct tokens (in first-seen order), how often each occurs,
    and the CRC-32 of each (stable across processes and Python versions, unlike
    `hash()`): what scoring and fingerprints work from."""

    tokens: list[str]
    counts: np.ndarray  # float64
    hashes: np.ndarray  # int64


def count(tokens: Sequence[str]) -> Counted:
    counts = Counter(tokens)
    distinct = list(counts)
    n = len(distinct)
    return Counted(distinct, np.fromiter(counts.values(), np.float64, n), _crc32(distinct))


def _crc32(tokens: list[str]) -> np.ndarray:
    try:
        encoded = list(map(str.encode, tokens))  # twice as fast as one call per token
    except UnicodeEncodeError:  # a lone surrogate, from a lying charset
        encoded = [t.encode("utf-8", "surrogatepass") for t in tokens]
    return np.fromiter(map(zlib.crc32, encoded), np.int64, len(tokens))


@dataclass(frozen=True, slots=True)
class Features:
    subject: tuple[str, ...]
    body: tuple[str, ...]
    meta: tuple[str, ...]
    sender: tuple[str, ...]
    urls: tuple[str, ...]
    _counted: dict[str, Counted] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def channel(self, name: str) -> tuple[str, ...]:
        value: tuple[str, ...] = getattr(self, name)
        return value

    def counted(self, name: str) -> Counted:
        """A channel's tokens counted and hashed, once: scoring hashes them into
        columns, `learning.fingerprint` into a SimHash."""
        counted = self._counted.get(name)
        if counted is None:
            counted = self._counted[name] = count(self.channel(name))
        return counted


def extract(message: ParsedMessage, channels: Collection[str] = CHANNELS) -> Features:
    """The token channels of a message; channels not asked for are left empty."""
    list_name = _list_name(message.list_id)
    # A list that rewrote From ("Name via List" <list@host>) hides the real sender.
    rewritten = bool(list_name) and bool(_VIA_LIST.search(message.sender.name))
    return Features(
        subject=_with_pairs(tokenize(_clean_subject(message.subject, list_name)))
        if "subject" in channels
        else (),
        body=tuple(tokenize(_clean_body(message.text, list_name))) if "body" in channels else (),
        meta=_meta_tokens(message, rewritten) if "meta" in channels else (),
        sender=_sender_tokens(message, rewritten) if "sender" in channels else (),
        urls=_url_tokens(message) if "urls" in channels else (),
    )


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; digits folded to 0 so 2019 and 2024 look alike."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)  # often ASCII then: no-break spaces
    if text.isascii():
        return text.translate(_TOKEN_CHARS).split()
    if _CJK_CHAR.search(text) or _CAPITAL_SIGMA in text:
        return _regex_tokens(text)
    unseen = [ord(c) for c in set(text) if ord(c) not in _TOKEN_CHARS]
    if len(_TOKEN_CHARS) + len(unseen) > _TOKEN_CHARS_MAX:
        return _regex_tokens(text)
    for code in unseen:
        _TOKEN_CHARS[code] = _token_chars(chr(code))
    return text.translate(_TOKEN_CHARS).split()


def _regex_tokens(text: str) -> list[str]:
    """The definition of the tokens, for any (NFKC-normalised) text."""
    text = _DIGITS.sub("0", text.lower())
    if not _CJK_CHAR.search(text):
        return _WORD_OR_CJK.findall(text)
    tokens: list[str] = []
    for token in _WORD_OR_CJK.findall(text):
        if _CJK_RUN.match(token):
            tokens.extend(token[i : i + 2] for i in range(len(token) - 1))
        else:
            tokens.append(token)
    return tokens


def _with_pairs(tokens: list[str]) -> tuple[str, ...]:
    return (*tokens, *map(" ".join, itertools.pairwise(tokens)))


def _list_name(list_id: str) -> str:
    match = _LIST_NAME.search(list_id)
    return match.group(1).lower() if match else ""


def _clean_subject(subject: str, list_name: str) -> str:
    if list_name:
        subject = re.sub(rf"\[\s*{re.escape(list_name)}\s*\]", " ", subject, flags=re.I)
    return _REPLY_PREFIX.sub("", subject.strip())


def _clean_body(text: str, list_name: str) -> str:
    text = text[:MAX_BODY_CHARS]
    footer = _LIST_FOOTER.search(text, max(0, len(text) - 4000))
    if footer:
        text = text[: footer.start()]
    if list_name:
        text = re.sub(re.escape(list_name), " ", text, flags=re.I)
    return text


def _meta_tokens(message: ParsedMessage, rewritten: bool) -> tuple[str, ...]:
    tokens: list[str] = []
    sender = message.sender
    if not sender.address:
        tokens.append("from:none")
    if sender.name and "@" in sender.name:
        tokens.append("from_name_has_address")
    if message.reply_to.domain and message.reply_to.domain != sender.domain and not rewritten:
        tokens.append("reply_to_differs")
    for name, value in message.headers:
        tokens.append(f"{name}:{_header_value_token(name, value)}")
    tokens.append("html" if message.has_html else "no_html")
    if not message.text.strip():
        tokens.append("no_text")
    for attachment in message.attachments:
        tokens.append(f"attach:{attachment.content_type}")
        extension = (
            attachment.filename.rpartition(".")[2].lower() if "." in attachment.filename else ""
        )
        if extension:
            tokens.append(f"attach_ext:{extension[:10]}")
    tokens.append(f"links:{_bucket(len(message.links))}")
    tokens.append(f"text_len:{_bucket(len(message.text) // 100)}")
    if message.subject.isupper() and len(message.subject) > 8:
        tokens.append("subject_all_caps")
    return tuple(tokens)


def _header_value_token(name: str, value: str) -> str:
    value = value.lower()
    if name == "content-type":
        return value.partition(";")[0].strip()
    if name == "x-mailer":  # keep the product, not its build number
        return " ".join(re.findall(r"[a-z]+", value)[:2])
    return value[:40]


def _sender_tokens(message: ParsedMessage, rewritten: bool) -> tuple[str, ...]:
    sender = message.sender
    if rewritten or not sender.domain:
        return ()
    tokens = [f"from:{sender.domain}", f"from_tld:{_tld(sender.domain)}"]
    if message.reply_to.domain and message.reply_to.domain != sender.domain:
        tokens.append(f"reply_to:{message.reply_to.domain}")
    return tuple(tokens)


def _url_tokens(message: ParsedMessage) -> tuple[str, ...]:
    tokens: list[str] = []
    for domain in message.link_domains:
        tokens += [domain, f"tld:{_tld(domain)}"]
        if domain.replace(".", "").isdigit():
            tokens.append("ip_link")
    return tuple(tokens)


def _tld(domain: str) -> str:
    return domain.rpartition(".")[2]


def _bucket(n: int) -> str:
    """0, 1, 2-3, 4-7, ...: counts matter by order of magnitude."""
    if n < 2:
        return str(n)
    low = 1 << (n.bit_length() - 1)
    return f"{low}-{2 * low - 1}"
