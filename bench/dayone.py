"""A stranger's mailbox on the first day: the two shared corpora, leave one corpus out.

    python bench/dayone.py [--samples 500,1000] [--c 3] [--ham-weight 1] [--floor 0.9]
                           [--no-replay] [--only spamassassin_public]

``--c``, ``--ham-weight`` and ``--floor`` set the layer's inverse penalty
(`personal.DEFAULT_C`), the weight of a kept message (`personal.HAM_WEIGHT`) and the
floor of a calibrated threshold (`calibration.MIN_CALIBRATED`), to measure the
settings before issue 18's second pass (``--c 10 --ham-weight 1 --floor 0.9``).

Both ways round, a base model is trained (the shipped pipeline, `model.train`)
on one corpus; the other plays the user's mailbox. Its messages are split by
delivery time within each class: the older half is the mail already in the
mailbox (kept folders = ham, Junk = spam), the newer half arrives afterwards.
Mail is read as the user's client shows it: `_cache.as_shown` removes the
collection's trace and verdict headers and upstream `[SPAM]` subject tags.

On the arriving half, ham junked (moved to Junk; flagged `$Junk` but left in
place) and spam caught (moved, flagged) for:

* **before**: the base model at its own threshold, everything moved;
* **threshold**: the threshold calibrated (`calibration.calibrate`) on the base
  model's scores of the newest N kept and N junked messages of the older half;
* **layer**: a personal layer (`personal.fit`) fitted on that sample, the
  threshold calibrated on its out-of-fold scores (`personal.cross_scores`).

Then the immediate-feedback replay (the protocol of `bench/feedback.py`) over
the arriving half in delivery order, starting from the largest sample: every
mistake is corrected at once and the layer refitted before the next message
(corrections weigh `CORRECTION_WEIGHT` sample labels). bogofilter starts from
the same base corpus and the same sample, and trains on every error
(train-on-error); its "unsure" verdicts stay in the inbox.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cache import CACHE, CORPORA, NAMES, READING, as_shown, examples, key

from spamd.core import calibration, personal
from spamd.core.scorer import DEFAULT_FP_BUDGET, Scorer
from spamd.errors import CalibrationError
from spamd.training import metrics
from spamd.training import model as model_lib
from spamd.training.corpus import Examples

CORRECTION_WEIGHT = 5.0  # a user's correction against one label guessed from a folder


def base_scorer(name: str) -> Scorer:
    """The shipped pipeline trained on one whole corpus (cached)."""
    sources = (*READING, "spamd/training/model.py", "spamd/core/scorer.py")
    path = CACHE / f"base-{name}-{key(name, sources)}.pickle"
    if path.exists():
        with path.open("rb") as handle:
            cached: Scorer = pickle.load(handle)  # noqa: S301 - our own cache file
            return cached
    data = examples(name)
    scorer = model_lib.train(data.features, data.labels).scorer
    with path.open("wb") as handle:
        pickle.dump(scorer, handle)
    return scorer


def halves(data: Examples) -> tuple[list[int], list[int]]:
    """Older and newer half of each class by delivery time; each list oldest first."""
    older: list[int] = []
    newer: list[int] = []
    for label in (0, 1):
        idx = sorted(
            (i for i, y in enumerate(data.labels) if y == label),
            key=lambda i: (data.times[i], data.sources[i]),
        )
        cut = len(idx) // 2
        older += idx[:cut]
        newer += idx[cut:]
    key = lambda i: (data.times[i], data.sources[i])  # noqa: E731
    return sorted(older, key=key), sorted(newer, key=key)


def newest(data: Examples, older: list[int], label: int, n: int) -> list[int]:
    return [i for i in older if data.labels[i] == label][-n:]


@dataclass
class Outcome:
    name: str
    ham_moved: int = 0
    ham_flagged: int = 0
    spam_moved: int = 0
    spam_flagged: int = 0
    ham: int = 0
    spam: int = 0
    auc: float = math.nan
    note: str = ""

    def row(self) -> str:
        def share(k: int, n: int) -> str:
            return f"{k / n:.2%} ({k})" if n else "-"

        return (
            f"| {self.name} | {share(self.ham_moved, self.ham)} | "
            f"{share(self.ham_flagged, self.ham)} | {self.spam_moved / self.spam:.3f} | "
            f"{self.spam_flagged / self.spam:.3f} | {self.auc:.4f} | {self.note} |"
        )


def outcome(
    name: str, labels: np.ndarray, scores: np.ndarray, cal: calibration.Calibration, note: str
) -> Outcome:
    moved = scores >= cal.move_at
    flagged = (scores >= cal.threshold) & ~moved
    ham, spam = labels == 0, labels == 1
    return Outcome(
        name,
        ham_moved=int((moved & ham).sum()),
        ham_flagged=int((flagged & ham).sum()),
        spam_moved=int((moved & spam).sum()),
        spam_flagged=int((flagged & spam).sum()),
        ham=int(ham.sum()),
        spam=int(spam.sum()),
        auc=metrics.report(labels, scores, cal.threshold).roc_auc,
        note=note,
    )


def fixed(threshold: float) -> calibration.Calibration:
    return calibration.Calibration(threshold, threshold, 0, 0, 1.0, math.nan)


@dataclass
class Replay:
    name: str
    fp: int = 0
    fn: int = 0
    trained: int = 0
    seconds: list[float] = field(default_factory=list)
    fifths: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)] * 5)

    def tally(self, position: int, total: int, label: int, junked: bool) -> bool:
        if junked == bool(label):
            return False
        k = min(4, position * 5 // total)
        fp, fn = self.fifths[k]
        self.fifths[k] = (fp + (not label), fn + label)
        self.fp += not label
        self.fn += label
        return True


def replay_layer(
    designs: list[personal.Design],
    labels: np.ndarray,
    sample: list[int],
    arriving: list[int],
    c: float,
) -> Replay:
    out = Replay("spamd (base + layer, calibrated)")
    train_idx = list(sample)
    weights = [1.0] * len(sample)
    y = labels
    cal = calibration.calibrate(
        *_split(personal.cross_scores([designs[i] for i in sample], y[sample], c=c), y[sample]),
        DEFAULT_FP_BUDGET,
    )
    layer = personal.fit([designs[i] for i in train_idx], y[train_idx], weights, c=c)
    for n, i in enumerate(arriving):
        junked = layer.score(designs[i]) >= cal.threshold  # moved or flagged: the user sees it
        if out.tally(n, len(arriving), int(y[i]), junked):
            train_idx.append(i)
            weights.append(CORRECTION_WEIGHT)
            started = time.perf_counter()
            layer = personal.fit(
                [designs[j] for j in train_idx], y[train_idx], weights, c=c, start=layer
            )
            out.seconds.append(time.perf_counter() - started)
            out.trained += 1
    return out


def replay_bogofilter(
    base: str, user: Examples, sample: list[int], arriving: list[int], tmp: Path
) -> Replay:
    out = Replay("bogofilter, train on error")
    db = tmp / f"bogofilter-{base}"
    db.mkdir()

    def shown(source: str) -> str:
        target = tmp / "mail" / Path(source).parent.name / Path(source).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(as_shown(Path(source).read_bytes()))
        return str(target)

    base_files = sorted((CORPORA / base).glob("*/*.eml"))
    for flag, cls in (("-n", "ham"), ("-s", "spam")):
        files = [shown(str(f)) for f in base_files if f.parent.name == cls]
        files += [shown(user.sources[i]) for i in sample if user.labels[i] == (cls == "spam")]
        for start in range(0, len(files), 1000):
            subprocess.run(
                ["bogofilter", "-d", str(db), flag, "-B", *files[start : start + 1000]], check=True
            )
    for n, i in enumerate(arriving):
        mail = shown(user.sources[i])
        verdict = subprocess.run(
            ["bogofilter", "-d", str(db), "-T", "-I", mail],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()[0]
        label = user.labels[i]
        if out.tally(n, len(arriving), label, verdict == "S"):
            subprocess.run(
                ["bogofilter", "-d", str(db), "-s" if label else "-n", "-I", mail], check=True
            )
            out.trained += 1
    return out


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return scores[labels == 0], scores[labels == 1]


def one_way(base: str, user: str, samples: list[int], c: float, replay: bool) -> None:
    scorer = base_scorer(base)
    data = examples(user)
    older, newer = halves(data)
    labels = np.asarray(data.labels)
    designs = [scorer.design(f) for f in data.features]
    base_scores = np.array([personal.EMPTY.score(d) for d in designs])
    y_new = labels[newer]
    print(
        f"\n## base trained on {base}; {user} is the mailbox\n\n"
        f"older half (existing mail): {sum(labels[older] == 0)} ham, "
        f"{sum(labels[older] == 1)} spam; "
        f"arriving half: {sum(y_new == 0)} ham, {sum(y_new == 1)} spam. Base threshold "
        f"{scorer.threshold:.4f}.\n"
    )
    print(
        "| model on the arriving half | ham moved to Junk | ham flagged only | spam moved | "
        "spam flagged | ROC AUC | threshold (move at) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        outcome(
            "before: base, own threshold",
            y_new,
            base_scores[newer],
            fixed(scorer.threshold),
            f"{scorer.threshold:.4f}",
        ).row()
    )
    uncal = calibration.uncalibrated(scorer.threshold)
    print(
        outcome(
            "before: base, cautious (no sample yet)",
            y_new,
            base_scores[newer],
            uncal,
            f"{uncal.threshold:.4f} ({uncal.move_at:.4f})",
        ).row()
    )
    notes: list[str] = []
    for n in samples:
        sample = newest(data, older, 0, n) + newest(data, older, 1, n)
        n_ham, n_spam = sum(labels[sample] == 0), sum(labels[sample] == 1)
        try:
            cal = calibration.calibrate(
                *_split(base_scores[sample], labels[sample]), DEFAULT_FP_BUDGET
            )
            print(
                outcome(
                    f"threshold on {n_ham} ham + {n_spam} spam",
                    y_new,
                    base_scores[newer],
                    cal,
                    _note(cal),
                ).row()
            )
        except CalibrationError as exc:
            print(f"| threshold on {n_ham} ham + {n_spam} spam | refused: {exc} |")
        started = time.perf_counter()
        cross = personal.cross_scores([designs[i] for i in sample], labels[sample], c=c)
        layer = personal.fit([designs[i] for i in sample], labels[sample], c=c)
        fitted = time.perf_counter() - started
        try:
            cal = calibration.calibrate(*_split(cross, labels[sample]), DEFAULT_FP_BUDGET)
        except CalibrationError as exc:
            print(f"| layer on {n_ham} ham + {n_spam} spam | refused: {exc} |")
            continue
        scores = np.array([layer.score(designs[i]) for i in newer])
        print(
            outcome(f"layer on {n_ham} ham + {n_spam} spam", y_new, scores, cal, _note(cal)).row()
        )
        notes.append(
            f"layer on {n_ham} + {n_spam}: {layer.cols.size} offsets, "
            f"{layer.nbytes / 1024:.0f} KB; "
            f"cross-fitted and fitted (6 fits) in {fitted:.1f} s"
        )
    print("", *notes, sep="\n- ")
    if not replay:
        return
    sample = newest(data, older, 0, samples[-1]) + newest(data, older, 1, samples[-1])
    arriving = newer
    results = [replay_layer(designs, labels, sample, arriving, c)]
    with tempfile.TemporaryDirectory() as tmp:
        results.append(replay_bogofilter(base, data, sample, arriving, Path(tmp)))
    print(
        f"\nImmediate-feedback replay of the arriving half ({len(arriving)} messages, "
        "delivery order), "
        f"both filters starting from {base} and the same sample:\n"
    )
    print("| filter | ham junked (FP) | spam missed (FN) | errors | trained on | FP/FN per fifth |")
    print("|---|---:|---:|---:|---:|---|")
    n_ham = int((y_new == 0).sum())
    for r in results:
        fifths = " ".join(f"{fp}/{fn}" for fp, fn in r.fifths)
        print(
            f"| {r.name} | {r.fp} ({r.fp / n_ham:.2%}) | {r.fn} | {r.fp + r.fn} | "
            f"{r.trained} | {fifths} |"
        )
    s = results[0].seconds
    if s:
        print(
            f"\nlayer refits: {len(s)}, seconds median {statistics.median(s):.2f} "
            f"(max {max(s):.2f})"
        )


def _note(cal: calibration.Calibration) -> str:
    moved = f" (move at {cal.move_at:.4f}, cautious)" if cal.cautious else ""
    return f"{cal.threshold:.4f}{moved}; bound {cal.fpr_bound:.2%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="500,1000", help="kept/junked messages per class")
    parser.add_argument(
        "--c", type=float, default=personal.DEFAULT_C, help="layer's inverse penalty"
    )
    parser.add_argument(
        "--ham-weight", type=float, default=personal.HAM_WEIGHT, help="a kept message's weight"
    )
    parser.add_argument(
        "--floor", type=float, default=calibration.MIN_CALIBRATED, help="calibrated floor"
    )
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument(
        "--only", choices=NAMES, help="only the way with this corpus as the mailbox"
    )
    args = parser.parse_args()
    samples = [int(s) for s in args.samples.split(",")]
    personal.HAM_WEIGHT = args.ham_weight  # read by personal.fit at each call
    calibration.MIN_CALIBRATED = args.floor  # read by calibration.calibrate
    print(
        f"layer: C {args.c:g}, a kept message weighs {args.ham_weight:g}; "
        f"calibrated thresholds never below {args.floor:g}"
    )
    print(f"load: {os.getloadavg()[0]:.1f} (1-minute load average at the start; 2 cores)")
    for base, user in ((NAMES[1], NAMES[0]), (NAMES[0], NAMES[1])):
        if args.only in (None, user):
            one_way(base, user, samples, args.c, not args.no_replay)
    print(f"\nload at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
