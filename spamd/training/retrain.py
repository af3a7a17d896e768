"""Retraining from users' corrections, with a guard before anything goes live.

Runs in its own process (``python -m spamd.training.retrain``, started by the daemon's
retrain job or by `spamd model retrain`), so the daemon never imports
scikit-learn. Steps:

1. the *base data* beside the base model (``NAME.base.npz``: the hashed token
   counts of every message it was trained on) is split once, by a fixed seed,
   into 80 % for training and 20 % held out;
2. a candidate is fitted on the training part plus every stored correction,
   each correction weighted `CORRECTION_WEIGHT` times (a label guessed by
   `spamd train --from-imap`, `BOOTSTRAP_WEIGHT` times), so it learns from
   users without forgetting what the base model knew;
3. its threshold is chosen on the held-out part for the false-positive budget
   (never below 0.5); the guard then refuses it if the false-positive rate is
   over the budget anyway, if meeting the budget costs too much recall
   (`MIN_RECALL`) or ranking quality (`MIN_AUC`), or if a replay of the
   users' corrections finds one it gets wrong (a rescued message it would
   still junk, a junked one it would still let through; bootstrap guesses are
   not replayed);
4. the candidate is kept as a version either way, and made live only if the
   guard passed.

Prints one JSON line with the outcome.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from spamd.core import scorer as scorer_lib
from spamd.core.calibration import MIN_THRESHOLD
from spamd.core.features import extract
from spamd.core.learning import BOOTSTRAP, Correction
from spamd.core.message import parse
from spamd.errors import ModelError, SpamdError
from spamd.store.state import FILE_NAME, State
from spamd.store.versions import ModelStore
from spamd.training import metrics
from spamd.training import model as model_lib

CORRECTION_WEIGHT = 10.0  # one user correction counts as this many base messages
BOOTSTRAP_WEIGHT = 2.0  # a label guessed from a folder (`spamd train --from-imap`)
HELD_OUT = 0.2
MIN_AUC = 0.98  # on held-out base data; below this a candidate has lost too much
MIN_RECALL = 0.8  # of held-out spam at the threshold the budget demands
SEED = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    version: str
    promoted: bool
    refused: str  # why not, if not
    corrections: int
    corrections_right: int
    held_out_fpr: float
    held_out_auc: float
    threshold: float
    seconds: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def retrain(
    store: ModelStore,
    state: State,
    fp_budget: float | None = None,
    accounts: Collection[str] = (),
) -> Outcome:
    """A guarded candidate from the corrections (of `accounts` only, if given: the
    daemon leaves out accounts whose personal layer learns from them)."""
    started = time.monotonic()
    base_model = scorer_lib.load(store.base)
    budget = fp_budget if fp_budget is not None else base_model.metadata.fp_budget
    counts, labels = model_lib.read_base(model_lib.base_path(store.base))
    corrections = _latest(
        [
            c
            for c in state.corrections(limit=10**9, with_raw=True, learnt_only=True)
            if not accounts or c.account in accounts
        ]
    )
    pipeline = model_lib.build_pipeline(channels=base_model.channels)
    hasher = pipeline.named_steps["hash"]
    if hasher.transform([]).shape[1] != counts.shape[1]:
        raise ModelError("base data and model have different channels", path=store.base)
    max_bytes = base_model.metadata.max_bytes
    fixes = hasher.transform(
        [extract(parse(c.raw, max_bytes), base_model.channels) for c in corrections]
    )
    fix_labels = np.array([int(c.label == "spam") for c in corrections], dtype=int)

    train_idx, held_idx = train_test_split(
        np.arange(labels.size), test_size=HELD_OUT, stratify=labels, random_state=SEED
    )
    learner = Pipeline(pipeline.steps[1:])
    x = sp.vstack([counts[train_idx], fixes]).tocsr()
    y = np.concatenate([labels[train_idx], fix_labels])
    guessed = np.array([c.how == BOOTSTRAP for c in corrections], dtype=bool)
    fix_weights = np.where(guessed, BOOTSTRAP_WEIGHT, CORRECTION_WEIGHT)
    weights = np.concatenate([np.ones(train_idx.size), fix_weights])
    learner.fit(x, y, clf__sample_weight=weights)
    fitted = Pipeline([pipeline.steps[0], *learner.steps])

    held_scores = learner.predict_proba(counts[held_idx])[:, 1]
    held_ham = held_scores[labels[held_idx] == 0]
    # Never a lower bar than the base model's: retraining must not make spamd
    # junk more eagerly than the model the admin installed.
    floor = max(MIN_THRESHOLD, base_model.threshold)
    threshold = max(floor, metrics.threshold_for_fpr(held_ham, budget))
    held = metrics.report(labels[held_idx], held_scores, threshold)
    replay = learner.predict_proba(fixes)[:, 1] if fix_labels.size else np.empty(0)
    correct = ((replay >= threshold) == (fix_labels == 1))[~guessed]
    right = int(correct.sum())
    given = [c for c, g in zip(corrections, guessed, strict=True) if not g]
    wrong = [c for c, ok in zip(given, correct, strict=True) if not ok]

    refused = _refusal(held, budget, wrong)
    meta = dataclasses.replace(
        base_model.metadata,
        threshold=threshold,
        ham=int((y == 0).sum()),
        spam=int((y == 1).sum()),
        sources=(
            *base_model.metadata.sources,
            f"{len(given)} corrections",
            *([f"{int(guessed.sum())} bootstrap labels"] if guessed.any() else []),
        ),
        metrics={
            "held_out_roc_auc": held.roc_auc,
            "held_out_false_positive_rate": held.false_positive_rate,
            "held_out_recall": held.recall,
            "corrections": float(len(given)),
            "bootstrap_labels": float(guessed.sum()),
            "corrections_right": float(right),
        },
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        fp_budget=budget,
        versions=model_lib.library_versions(),
        sha256="",  # a retrained version has no pickle: only weights and metadata
        parent=base_model.metadata.weights_sha256,
    )
    candidate = store.candidate_dir()
    model_lib.save_weights(model_lib.scorer_from(fitted, meta), candidate / "model.joblib")
    version = store.add(candidate, refused)
    if not refused:
        store.promote(version)
    return Outcome(
        version=version,
        promoted=not refused,
        refused=refused,
        corrections=len(given),
        corrections_right=right,
        held_out_fpr=held.false_positive_rate,
        held_out_auc=held.roc_auc,
        threshold=threshold,
        seconds=round(time.monotonic() - started, 2),
    )


def _latest(corrections: Sequence[Correction]) -> list[Correction]:
    """One label per message content (the newest), oldest first."""
    seen: dict[str, Correction] = {}
    for c in corrections:  # newest first
        seen.setdefault(c.content_hash, c)
    return list(reversed(seen.values()))


def _refusal(held: metrics.Report, budget: float, wrong: Sequence[Correction]) -> str:
    if wrong:
        subjects = "; ".join(f"{c.label} {c.subject[:40]!r}" for c in wrong[:3])
        return f"gets {len(wrong)} correction(s) wrong: {subjects}"
    if held.false_positive_rate > budget:
        return (
            f"false-positive rate {held.false_positive_rate:.4%} on held-out mail is over "
            f"the budget {budget:.4%}"
        )
    if held.recall < MIN_RECALL:
        return f"recall {held.recall:.4f} on held-out spam is below {MIN_RECALL}"
    if held.roc_auc < MIN_AUC:
        return f"ROC AUC {held.roc_auc:.4f} on held-out mail is below {MIN_AUC}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spamd.training.retrain", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True, help="the configured model file")
    parser.add_argument(
        "--account", action="append", default=[], help="learn only this account's corrections"
    )
    args = parser.parse_args(argv)
    try:
        state = State(args.state_dir / FILE_NAME)
        try:
            outcome = retrain(ModelStore(args.state_dir, args.base), state, accounts=args.account)
        finally:
            state.close()
    except SpamdError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(outcome.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
