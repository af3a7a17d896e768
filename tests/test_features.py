"""Features: list plumbing neutralised, tokens as the model expects them."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from spamd.core import features
from spamd.core.features import extract, tokenize
from spamd.core.message import parse
from tests.conftest import message

FOOTER = (
    "Real content here.\n"
    "_______________________________________________\n"
    "Osst-users mailing list\n"
    "Osst-users@lists.sourceforge.net\n"
    "https://lists.sourceforge.net/lists/listinfo/osst-users\n"
)


def features_of(raw: bytes):  # type: ignore[no-untyped-def]
    return extract(parse(raw))


def test_list_name_tag_and_footer_are_removed() -> None:
    raw = message(
        "[Osst-users] Re: Fwd: cheap offer",
        FOOTER,
        List_Id="Osst users <osst-users.lists.sourceforge.net>",
    )
    f = features_of(raw)
    assert f.subject == ("cheap", "offer", "cheap offer")
    assert "real" in f.body and "content" in f.body
    assert not any("osst" in token or "listinfo" in token for token in f.body)


def test_rewritten_from_hides_the_list_address() -> None:
    raw = message(
        "hello",
        "body",
        sender='"Jane via Osst-users" <osst-users@lists.sourceforge.net>',
        List_Id="<osst-users.lists.sourceforge.net>",
    )
    assert features_of(raw).sender == ()
    plain = features_of(message("hello", "body", sender="jane@example.com"))
    assert "from:example.com" in plain.sender


def test_tokens_fold_digits_and_case_and_keep_symbols() -> None:
    assert tokenize("WIN $5000 now!") == ["win", "$", "0000", "now", "!"]


def test_cjk_text_becomes_character_pairs() -> None:
    assert tokenize("ご請求額 ok 本") == ["ご請", "請求", "求額", "ok", "本"]
    f = features_of(message("ご請求額のお知らせ", "本文です"))
    assert "請求" in f.subject and "本文" in f.body


def test_channels_not_asked_for_stay_empty() -> None:
    f = extract(parse(message("subject words", "body words")), ("subject",))
    assert f.subject and not f.body and not f.meta


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200) | st.text(max_size=200))
@example("İstanbul STRASSE ß ǅ Ⅻ 12٣ ½ $€£!% _x_ a\u0307b \udc80 ﬁ")  # the fast path
@example("ΟΔΟΣ Σ ΣΑΣ")  # capital sigma: lower case by context, so the regex path
def test_the_fast_path_tokenizes_as_the_regex_definition(text: str) -> None:
    assert tokenize(text) == features._regex_tokens(unicodedata.normalize("NFKC", text))


def test_a_list_id_too_long_for_a_label_names_no_list() -> None:
    """Removing a list's name from the body costs name length x body length: a
    16 KB List-Id (0.8 s per message) is no list's (a label has at most 63 characters)."""
    name = "a" * 16000 + "b"
    raw = f"List-Id: <{name}.example>\r\nSubject: [{name}]\r\n\r\n{name} word".encode()
    assert extract(parse(raw)).body == (name, "word")
    assert features._list_name(f"<{'x' * 63}.example>") == "x" * 63
