"""Which feature channels and regularisation pay, within one corpus and across years.

    python bench/ablation.py [--corpora DIR] [--variants N]

For each variant of the pipeline: ROC AUC and recall at FPR <= 0.1 % on the
SpamAssassin corpus (stratified 80/20, seed 0), then trained on SpamAssassin
(2002) and tested on modern_public (2019-2026), and the other way round.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from spamd.core.features import CHANNELS
from spamd.core.message import DEFAULT_MAX_BYTES
from spamd.training import corpus, evaluation, metrics
from spamd.training import model as model_lib

DEFAULT_CORPORA = Path(__file__).resolve().parent.parent.parent / "shared/corpora"
VARIANTS: list[dict[str, Any]] = [
    {"channels": ("subject", "body", "sender"), "c": 30.0},  # the shipped choice
    {"channels": ("subject", "body", "sender"), "c": 100.0},
    {"channels": ("subject", "body"), "c": 30.0},
    {"channels": ("subject", "body"), "c": 12.0},
    {"channels": ("subject", "body", "sender", "urls"), "c": 30.0},
    {"channels": ("subject", "body", "sender", "meta"), "c": 30.0},
    {"channels": CHANNELS, "c": 30.0},
]


def score(train: corpus.Examples, test: corpus.Examples, **options: Any) -> str:
    trained = model_lib.train(
        train.features, train.labels, pipeline=model_lib.build_pipeline(**options)
    )
    scorer = trained.scorer
    report = metrics.report(test.labels, scorer.score_features(test.features), scorer.threshold)
    return f"{report.roc_auc:.4f} / {report.recall_at_fpr_0_1pct:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument(
        "--variants", type=int, default=len(VARIANTS), help="run only the first N (1: shipped)"
    )
    args = parser.parse_args()
    old = corpus.load_examples([args.corpora / "spamassassin_public"], CHANNELS, DEFAULT_MAX_BYTES)
    new = corpus.load_examples([args.corpora / "modern_public"], CHANNELS, DEFAULT_MAX_BYTES)
    train, test = evaluation.split(old, "stratified", 0.2, seed=0)
    print("AUC / recall@FPR<=0.1% for each variant\n")
    print("| channels | C | SpamAssassin 80/20 | 2002 -> 2019-26 | 2019-26 -> 2002 |")
    print("|---|---|---|---|---|")
    for options in VARIANTS[: args.variants]:
        pairs = ((train, test), (old, new), (new, old))
        row = " | ".join(score(fit, check, **options) for fit, check in pairs)
        print(f"| {'+'.join(options['channels'])} | {options['c']} | {row} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
