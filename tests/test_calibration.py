"""Per-account calibration and personal layers (pure): thresholds, refusals, isolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spamd.core import calibration, personal, policy
from spamd.core.scorer import Scorer, load
from spamd.errors import CalibrationError
from tests.conftest import SAMPLES, SHIPPED_MODEL, message

BUDGET = 0.001


def action(cal: calibration.Calibration, score: float) -> str:
    """What the daemon does with a score on an account with this calibration."""
    verdict = policy.decide(score, cal.threshold, "", mode="move", move_at=cal.move_at)
    return verdict.action


def uniform(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, n)


def test_calibration_refuses_too_little_mail_and_says_how_much() -> None:
    spam = np.full(100, 0.99)
    with pytest.raises(CalibrationError, match=r"199 kept and 100 junked .* at least 200 kept"):
        calibration.calibrate(uniform(calibration.MIN_HAM - 1), spam, BUDGET)
    with pytest.raises(CalibrationError, match=r"too little mail.* 5 junked"):
        calibration.calibrate(uniform(5000), spam[:5], BUDGET)


def test_enough_ham_holds_the_budget_with_the_rank_margin() -> None:
    ham = uniform(5000)
    cal = calibration.calibrate(ham, np.full(50, 0.999999), BUDGET)
    # (k+1)/(n+1) <= 0.001 allows k = 4 ham above: the threshold is just above the 5th highest
    assert np.sum(ham >= cal.threshold) == 4
    assert cal.fpr_bound == pytest.approx(5 / 5001)
    assert cal.fpr_bound <= BUDGET
    assert not cal.cautious
    assert action(cal, cal.threshold) == "move"
    assert cal.spam_caught == 1.0


def test_a_small_sample_sits_above_every_kept_ham_and_is_cautious() -> None:
    ham = uniform(400) * 0.9
    spam = np.concatenate([np.full(30, 0.995), np.full(10, 0.2)])
    cal = calibration.calibrate(ham, spam, BUDGET)
    assert cal.threshold > ham.max()
    assert cal.fpr_bound == pytest.approx(1 / 401)  # stated, over the budget: a small sample
    assert cal.cautious
    assert cal.move_at > cal.threshold
    between = (cal.threshold + cal.move_at) / 2
    assert action(cal, between) == "flag"  # flagged, not moved
    assert action(cal, cal.move_at) == "move"
    assert action(cal, cal.threshold - 1e-9) == "keep"
    assert cal.spam_caught == pytest.approx(0.75)


def test_a_bigger_sample_is_no_longer_cautious() -> None:
    assert calibration.calibrate(uniform(998), np.ones(20), BUDGET).cautious
    assert not calibration.calibrate(
        uniform(calibration.needed_ham(BUDGET)), np.ones(20), BUDGET
    ).cautious


def test_the_threshold_never_drops_below_the_calibrated_floor() -> None:
    cal = calibration.calibrate(np.full(3000, 0.01), np.full(50, 0.95), BUDGET)
    assert cal.threshold == calibration.MIN_CALIBRATED == 0.8
    assert cal.spam_caught == 1.0


def test_an_uncalibrated_account_flags_around_the_model_threshold() -> None:
    cal = calibration.uncalibrated(0.9)
    assert cal.threshold == 0.9
    assert cal.cautious
    # two log-odds further: 0.9 is 9:1, the move line 9e2:1
    assert cal.move_at == pytest.approx(9 * math.e**2 / (1 + 9 * math.e**2))
    assert action(cal, 0.95) == "flag"


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return load(SHIPPED_MODEL)


def designs(scorer: Scorer, raws: list[bytes]) -> list[personal.Design]:
    return [scorer.design(scorer.features(raw)) for raw in raws]


def test_an_empty_layer_scores_exactly_as_the_base(scorer: Scorer) -> None:
    raws = [p.read_bytes() for p in sorted(SAMPLES.glob("*/*.eml"))]
    base = scorer.score_many(raws)
    for raw, d, expected in zip(raws, designs(scorer, raws), base, strict=True):
        assert personal.EMPTY.score(d) == pytest.approx(expected, abs=1e-12), raw[:40]
    assert personal.EMPTY.nbytes == 0


def newsletter(n: int) -> bytes:
    return message(
        f"Your weekly picks {n}: click here for the best price",
        "Hello, please click here to see your offers and our price list. "
        f"You can unsubscribe at any time. Issue {n}.",
        sender="news@shop.example",
    )


def test_one_accounts_corrections_leave_another_accounts_scores_unchanged(scorer: Scorer) -> None:
    # A rescues newsletters the base junks; B's layer is fitted on B's own mail only.
    rescued = designs(scorer, [newsletter(n) for n in range(8)])
    others = designs(scorer, [p.read_bytes() for p in sorted(SAMPLES.glob("*/*.eml"))])
    others_labels = [0] * 6 + [1] * 6
    layer_b = personal.fit(others, others_labels)
    probe = designs(scorer, [newsletter(100)])[0]
    b_before = [layer_b.score(d) for d in [*others, probe]]

    layer_a = personal.fit(rescued, [0] * len(rescued), [5.0] * len(rescued))
    assert layer_a.score(probe) < personal.EMPTY.score(probe) - 0.1  # A learnt
    layers = {"a": layer_a, "b": layer_b}  # what the daemon keeps: one layer per account
    assert [layers["b"].score(d) for d in [*others, probe]] == b_before
    assert layer_a.cols.size and layer_a.examples == 8


def test_a_layer_stays_near_the_base_on_mail_it_did_not_see(scorer: Scorer) -> None:
    rescued = designs(scorer, [newsletter(n) for n in range(8)])
    layer = personal.fit(rescued, [0] * 8)
    unrelated = designs(scorer, [p.read_bytes() for p in sorted((SAMPLES / "spam").glob("*.eml"))])
    # the penalty bounds the shift: |bias| + sum of per-channel offset norms
    bound = abs(layer.bias) + float(np.linalg.norm(layer.offsets)) * math.sqrt(3)
    for d in unrelated:
        assert abs(layer.logit(d) - d[2]) <= bound


def test_cross_scores_never_score_a_message_with_a_layer_that_saw_it(scorer: Scorer) -> None:
    raws = [newsletter(n) for n in range(10)]
    d = designs(scorer, raws)
    labels = [0] * 10
    inside = personal.fit(d, labels)
    cross = personal.cross_scores(d, labels, folds=5)
    # a layer scores its own training mail as more certainly ham than one that never saw it
    assert np.mean(cross) > np.mean([inside.score(x) for x in d])


def test_a_calibration_is_stored_as_json_and_a_damaged_one_is_named() -> None:
    cal = calibration.calibrate(uniform(400), np.ones(20), BUDGET)
    assert calibration.from_json(calibration.to_json(cal), "x") == cal
    with pytest.raises(CalibrationError, match=r"^state/c\.json: not a stored calibration"):
        calibration.from_json('{"threshold": 0.9}', "state/c.json")


def test_an_accounts_calibration_becomes_per_account_gauges() -> None:
    from prometheus_client import generate_latest  # noqa: PLC0415

    from spamd.ops.telemetry import Telemetry  # noqa: PLC0415

    telemetry = Telemetry()
    telemetry.calibrated("ann", 0.91, 0.98, 400, 20)
    text = generate_latest(telemetry.registry).decode()
    assert 'spamd_account_threshold{account="ann"} 0.91' in text
    assert 'spamd_account_move_at{account="ann"} 0.98' in text
    assert 'spamd_account_calibration_messages{account="ann",label="ham"} 400.0' in text


def test_a_kept_message_weighs_more_than_a_junked_one() -> None:
    # Two messages the base cannot tell apart, one kept and one junked: precision
    # first, the layer leans to ham (with equal weights it would stay at 0.5).
    same: personal.Design = (np.array([7], dtype=np.int32), np.array([1.0]), 0.0)
    layer = personal.fit([same, same], [0, 1])
    assert personal.HAM_WEIGHT > 1
    assert layer.score(same) < 0.5 - 0.1
