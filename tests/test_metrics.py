"""Evaluation figures, checked against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from spamd.training.metrics import recall_at_fpr, report, threshold_for_fpr


def test_threshold_keeps_ham_above_it_within_the_budget() -> None:
    ham = [i / 1000 for i in range(1000)]  # 0.000 .. 0.999
    threshold = threshold_for_fpr(ham, 0.01)  # 10 ham may be above
    above = sum(score >= threshold for score in ham)
    assert above == 10
    assert threshold == pytest.approx(0.989, abs=1e-9)
    assert threshold_for_fpr(ham, 0.0) > 0.999


def test_recall_at_fpr_uses_the_best_allowed_threshold() -> None:
    labels = [0] * 100 + [1] * 4
    scores = [0.1] * 99 + [0.9] + [0.95, 0.85, 0.5, 0.99]
    assert recall_at_fpr(labels, scores, 0.0) == 0.5  # must beat the 0.9 ham
    assert recall_at_fpr(labels, scores, 0.01) == 1.0  # one ham may pass: down to 0.1+


def test_report_counts_and_rates() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.8, 0.9, 0.7, 0.6, 0.2]
    r = report(labels, scores, 0.5)
    assert (r.true_positives, r.false_positives, r.true_negatives, r.false_negatives) == (
        3,
        1,
        3,
        1,
    )
    assert r.precision == 0.75 and r.recall == 0.75 and r.f1 == 0.75
    assert r.false_positive_rate == 0.25
    assert r.roc_auc == pytest.approx(11.5 / 16)  # the 0.2 tie counts half
    assert any("confusion" in line for line in r.lines())


def test_report_on_one_class_has_no_auc() -> None:
    assert math.isnan(report([0, 0], [0.1, 0.2], 0.5).roc_auc)
