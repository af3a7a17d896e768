"""Per-account calibration: a threshold chosen on the account's own mail. Pure.

A model's own threshold is chosen on the mail it was trained on; on a stranger's
mail the same score can mean something else (the user's newsletters, their
language, their correspondents). So before an account moves mail, spamd scores
a sample of what the user keeps (ham: INBOX, archives) and of what they junked
(spam: Junk), and sets the threshold from those scores.

The margin for a small sample comes from order statistics: if a threshold sits
just above the (k+1)-th highest of n kept ham, a new ham from the same mail
lands at or above it with probability (k+1)/(n+1), whatever the score
distribution. The threshold is the lowest one whose bound is within the budget;
with fewer than 1/budget - 1 kept ham no rank is, and the threshold sits above
the highest kept ham with the bound 1/(n+1) stated instead (0.3 % for 332 ham).

Until that bound is within the budget the account is *cautious*: a message
between the threshold and `move_at` (the threshold moved `CAUTIOUS_MARGIN`
further in log-odds) is flagged with ``$Junk`` and left where it is; only mail
above `move_at` is moved. Below `MIN_HAM` kept ham or `MIN_SPAM` junked spam
calibration refuses (`CalibrationError`) and the account stays cautious around
the model's own threshold.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from spamd.errors import CalibrationError

MIN_HAM = 200  # kept messages needed at all: the bound is then 1/201 = 0.5 %
MIN_SPAM = 20  # junked messages needed to see what the threshold costs in recall
CAUTIOUS_MARGIN = 2.0  # log-odds between flagging and moving while the sample is small
# The shipped model's floor (`model.train`, `retrain`): never below this, however low
# its out-of-fold ham scores; on a stranger's mail they understate what ham scores.
MIN_THRESHOLD = 0.9
# The floor of a threshold calibrated on the account's own mail. Lower than the
# model's, because the sample is the user's own mail; not lower still, because the
# cross-fitted scores of a personal layer understate what new mail of that user will
# score. bench/dayone.py, layer on 2,000 kept + 948 junked SpamAssassin messages:
# calibrated at 0.870, 2 of 2,075 arriving ham junked (0.10 %) and 0.802 of spam
# caught; the 0.9 floor cost 0.036 of that recall (0.766) for 1 ham. With 1,000 kept
# modern_public messages the sample's bound put the threshold at 0.43; at a floor of
# 0.5 one arriving ham of 2,530 was junked, at 0.8 none (0.997 caught).
MIN_CALIBRATED = 0.8


@dataclass(frozen=True, slots=True)
class Calibration:
    """An account's threshold and how much of its own mail it was chosen on."""

    threshold: float  # junk at or above
    move_at: float  # move at or above; between the two: flag only (cautious)
    ham: int  # kept messages scored
    spam: int  # junked messages scored
    fpr_bound: float  # (k+1)/(n+1): chance a new ham of this mail lands at or above threshold
    spam_caught: float  # share of the junked sample at or above the threshold

    @property
    def cautious(self) -> bool:
        return self.move_at > self.threshold


def uncalibrated(threshold: float) -> Calibration:
    """An account with too little mail of its own: the model's threshold, cautiously."""
    return Calibration(
        threshold=threshold,
        move_at=_shifted(threshold, CAUTIOUS_MARGIN),
        ham=0,
        spam=0,
        fpr_bound=1.0,
        spam_caught=float("nan"),
    )


def calibrate(ham_scores: ArrayLike, spam_scores: ArrayLike, fp_budget: float) -> Calibration:
    """The account's threshold for `fp_budget` from the scores of its kept (ham)
    and junked (spam) mail; raises CalibrationError when there is too little of either.

    The scores must come from a model that did not learn from these messages
    (the base model, or out-of-fold scores of a personal layer): in-sample scores
    of ham are too low and would set the threshold too low.
    """
    ham = np.sort(np.asarray(ham_scores, dtype=float))[::-1]
    spam = np.asarray(spam_scores, dtype=float)
    check_sample(ham.size, spam.size)
    if not 0 < fp_budget < 1:
        raise CalibrationError(f"false-positive budget {fp_budget} is not between 0 and 1")
    n = ham.size
    k = math.floor(fp_budget * (n + 1)) - 1  # ham allowed at or above: (k+1)/(n+1) <= budget
    rank = max(k, 0)
    threshold = max(MIN_CALIBRATED, float(np.nextafter(ham[rank], np.inf)))
    bound = (rank + 1) / (n + 1)
    small = k < 0
    return Calibration(
        threshold=threshold,
        move_at=_shifted(threshold, CAUTIOUS_MARGIN) if small else threshold,
        ham=int(n),
        spam=int(spam.size),
        fpr_bound=bound,
        spam_caught=float(np.mean(spam >= threshold)),
    )


def check_sample(ham: int, spam: int) -> None:
    """Raise CalibrationError, saying what is missing, on too few kept or junked messages."""
    if ham < MIN_HAM or spam < MIN_SPAM:
        raise CalibrationError(
            f"too little mail to calibrate on: {ham} kept and {spam} junked "
            f"messages, at least {MIN_HAM} kept and {MIN_SPAM} junked needed"
        )


def needed_ham(fp_budget: float) -> int:
    """Kept messages needed before the bound is within the budget (then not cautious)."""
    return math.ceil(1 / fp_budget) - 1


def _shifted(probability: float, logits: float) -> float:
    p = min(max(probability, 1e-12), 1 - 1e-12)
    return 1.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) + logits)))


def to_json(cal: Calibration) -> str:
    return json.dumps(dataclasses.asdict(cal), sort_keys=True)


def from_json(text: str, source: str) -> Calibration:
    """A stored calibration; CalibrationError naming `source` if it is not one."""
    try:
        data = json.loads(text)
        return Calibration(
            threshold=float(data["threshold"]),
            move_at=float(data["move_at"]),
            ham=int(data["ham"]),
            spam=int(data["spam"]),
            fpr_bound=float(data["fpr_bound"]),
            spam_caught=float(data["spam_caught"]),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise CalibrationError(f"not a stored calibration ({exc!r})", account=source) from None
