"""Policy: score and lists in, action out."""

from __future__ import annotations

import pytest

from spamd.core import policy


@pytest.mark.parametrize(
    ("score", "sender", "mode", "expected"),
    [
        (0.95, "x@spam.example", "move", ("move", "score")),
        (0.95, "x@spam.example", "flag", ("flag", "score")),
        (0.95, "x@spam.example", "dry_run", ("log", "score")),
        (0.10, "x@spam.example", "move", ("keep", "score")),
        (0.99, "boss@work.example", "move", ("keep", "allow-list")),
        (0.99, "a@mail.partner.example", "move", ("keep", "allow-list")),
        (0.01, "pest@annoying.example", "move", ("move", "block-list")),
        (0.01, "other@notpartner.example", "move", ("keep", "score")),
    ],
)
def test_decide(score: float, sender: str, mode: str, expected: tuple[str, str]) -> None:
    verdict = policy.decide(
        score,
        0.9,
        sender,
        mode=mode,  # type: ignore[arg-type]
        allow=["boss@work.example", "partner.example"],
        block=["pest@annoying.example"],
    )
    assert (verdict.action, verdict.reason) == expected
    assert verdict.spam == (expected[0] != "keep")


def test_listed_matches_address_domain_and_subdomains_only() -> None:
    assert policy.listed("A@Example.org", ["example.org"])
    assert policy.listed("a@eu.example.org", ["example.org"])
    assert not policy.listed("a@badexample.org", ["example.org"])
    assert not policy.listed("b@example.org", ["a@example.org"])


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.95, ("flag", "uncertain")), (0.99, ("move", "score")), (0.5, ("keep", "score"))],
)
def test_a_cautious_account_flags_the_uncertain_band_instead_of_moving(
    score: float, expected: tuple[str, str]
) -> None:
    verdict = policy.decide(score, 0.9, "x@spam.example", mode="move", move_at=0.98)
    assert (verdict.action, verdict.reason) == expected


def test_the_uncertain_band_does_not_soften_what_the_user_taught() -> None:
    verdict = policy.decide(0.1, 0.9, "x@a.example", mode="move", remembered="spam", move_at=0.98)
    assert (verdict.action, verdict.reason) == ("move", "junked-before")
