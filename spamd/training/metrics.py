"""Evaluation figures for a spam filter. Pure: arrays in, numbers out.

Labels are 1 for spam and 0 for ham; scores are spam probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score


def threshold_for_fpr(ham_scores: ArrayLike, fp_budget: float) -> float:
    """The lowest threshold (score >= threshold is spam) that keeps the share of
    ham at or above it within `fp_budget`."""
    ham = np.sort(np.asarray(ham_scores, dtype=float))[::-1]
    if ham.size == 0:
        return 0.5
    allowed = math.floor(fp_budget * ham.size)
    if allowed >= ham.size:
        return 0.0
    return float(np.nextafter(ham[allowed], np.inf))


def recall_at_fpr(labels: ArrayLike, scores: ArrayLike, max_fpr: float) -> float:
    """Share of spam caught at the best threshold whose false-positive rate is <= max_fpr."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    threshold = threshold_for_fpr(s[y == 0], max_fpr)
    spam = s[y == 1]
    return float(np.mean(spam >= threshold)) if spam.size else 0.0


@dataclass(frozen=True, slots=True)
class Report:
    n_ham: int
    n_spam: int
    threshold: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    precision: float
    recall: float
    f1: float
    false_positive_rate: float
    roc_auc: float
    recall_at_fpr_0_1pct: float
    recall_at_fpr_1pct: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def measured(self) -> dict[str, float | None]:
        """`as_dict`, with None for a recall at an FPR this test set cannot measure."""
        figures: dict[str, float | None] = {**self.as_dict()}
        for key, fpr in (("recall_at_fpr_0_1pct", 0.001), ("recall_at_fpr_1pct", 0.01)):
            if not self.measures(fpr):
                figures[key] = None
        return figures

    def measures(self, fpr: float) -> bool:
        """Whether there is enough test ham for one false positive to be within `fpr`:
        below that, "recall at FPR <= fpr" is only the recall at no false positive."""
        return self.n_ham * fpr >= 1

    def _at(self, fpr: float, recall: float) -> str:
        if self.measures(fpr):
            return f"{recall:.4f}"
        return f"n/a ({self.n_ham} test ham cannot measure it: needs {math.ceil(1 / fpr)})"

    def lines(self) -> list[str]:
        return [
            f"messages        {self.n_ham} ham, {self.n_spam} spam",
            f"threshold       {self.threshold:.4f}",
            f"precision       {self.precision:.4f}",
            f"recall          {self.recall:.4f}",
            f"F1              {self.f1:.4f}",
            f"false-pos rate  {self.false_positive_rate:.4%}",
            f"ROC AUC         {self.roc_auc:.4f}",
            f"recall @FPR<=0.1%  {self._at(0.001, self.recall_at_fpr_0_1pct)}",
            f"recall @FPR<=1%    {self._at(0.01, self.recall_at_fpr_1pct)}",
            "confusion       predicted ham  predicted spam",
            f"  actual ham    {self.true_negatives:>13}  {self.false_positives:>14}",
            f"  actual spam   {self.false_negatives:>13}  {self.true_positives:>14}",
        ]


def report(labels: Sequence[int] | np.ndarray, scores: ArrayLike, threshold: float) -> Report:
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=float)
    predicted = s >= threshold
    tp = int(np.sum(predicted & y))
    fp = int(np.sum(predicted & ~y))
    tn = int(np.sum(~predicted & ~y))
    fn = int(np.sum(~predicted & y))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both_classes = bool(y.any() and (~y).any())
    return Report(
        n_ham=int((~y).sum()),
        n_spam=int(y.sum()),
        threshold=threshold,
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
        precision=precision,
        recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        false_positive_rate=fp / (fp + tn) if fp + tn else 0.0,
        roc_auc=float(roc_auc_score(y, s)) if both_classes else float("nan"),
        recall_at_fpr_0_1pct=recall_at_fpr(y, s, 0.001),
        recall_at_fpr_1pct=recall_at_fpr(y, s, 0.01),
    )
