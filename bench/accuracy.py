"""spamd against bogofilter on the same splits of the SpamAssassin corpus.

    python bench/accuracy.py [--corpus DIR] [--repeat 3]

For each split (stratified 80/20 with a fixed seed, and time-ordered 80/20 by
delivery time) both tools train on the same 80 % and score the same 20 %.
Printed side by side: ROC AUC, recall at FPR <= 0.1 %, FPR and recall at each
tool's own threshold, training time, scoring messages/second on one core
(reading and parsing included; median of --repeat runs over the whole corpus)
and the peak RSS of a scoring process. Installs nothing: bogofilter is used when
Debian's `bogofilter` is on PATH and skipped otherwise.

bogofilter reads whole messages, so it also learns the corpus's collection
artefacts (Received chains, X-Keywords, X-MailScanner; see the corpus README),
which spamd is built not to learn. A second bogofilter row ("shown headers")
gets each message with only the header fields a mail client shows, for a
comparison on the same information (accuracy only).

Last, how sure each difference is: spamd minus each bogofilter row on resamples
of the test set (paired, within each class), as a median, a 90 % interval and
the share of resamples in which spamd is at least as good.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy loads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _mail import without_artefacts  # noqa: E402

from spamd.core import scorer as scorer_lib  # noqa: E402
from spamd.core.features import DEFAULT_CHANNELS, extract  # noqa: E402
from spamd.core.message import DEFAULT_MAX_BYTES, parse  # noqa: E402
from spamd.training import corpus, evaluation, metrics  # noqa: E402
from spamd.training import model as model_lib  # noqa: E402

DEFAULT_CORPUS = (
    Path(__file__).resolve().parent.parent.parent / "shared/corpora/spamassassin_public"
)
CPU = str(min(os.sched_getaffinity(0)))


@dataclass
class Result:
    tool: str
    split: str
    auc: float
    recall_at_0_1: float
    fpr: float
    recall: float
    train_s: float
    msgs_per_s: float
    peak_rss_mb: float
    scores: np.ndarray  # per test message, in test order
    labels: list[int]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 1
    examples = corpus.load_examples([args.corpus], DEFAULT_CHANNELS, DEFAULT_MAX_BYTES)
    all_files = [Path(s) for s in examples.sources]
    has_bogofilter = shutil.which("bogofilter") is not None
    results: list[Result] = []
    splits: tuple[evaluation.Split, ...] = ("stratified", "time")
    for how in splits:
        train, test = evaluation.split(examples, how, 0.2, seed=0)
        results.append(_spamd(how, train, test, all_files, args.repeat))
        if has_bogofilter:
            results.append(_bogofilter(how, train, test, all_files, args.repeat))
            results.append(_bogofilter_shown_headers(how, train, test))
    _print(results, len(examples.labels), args.corpus)
    if has_bogofilter:
        _print_bootstrap(results)
    if not has_bogofilter:
        print("\nbogofilter not on PATH: install Debian's bogofilter to compare.")
    return 0


def _spamd(
    how: str, train: corpus.Examples, test: corpus.Examples, files: list[Path], repeat: int
) -> Result:
    started = time.perf_counter()
    # Training time includes reading and parsing the training mail, as bogofilter's does.
    train_features = [
        extract(parse(corpus.read_file(Path(source), DEFAULT_MAX_BYTES)), DEFAULT_CHANNELS)
        for source in train.sources
    ]
    trained = model_lib.train(train_features, train.labels)
    train_s = time.perf_counter() - started
    scores = trained.scorer.score_features(test.features)
    report = metrics.report(test.labels, scores, trained.scorer.threshold)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.joblib"
        model_lib.save(trained, path)
        rates = [_spamd_rate(path, files) for _ in range(repeat)]
        rss = _peak_rss(
            [
                sys.executable,
                "-m",
                "spamd.cli",
                "classify",
                "--model",
                str(path),
                *map(str, files[:2000]),
            ]
        )
    return Result(
        "spamd",
        how,
        report.roc_auc,
        report.recall_at_fpr_0_1pct,
        report.false_positive_rate,
        report.recall,
        train_s,
        statistics.median(rates),
        rss,
        scores,
        test.labels,
    )


def _spamd_rate(model_path: Path, files: list[Path]) -> float:
    """In-process scoring rate: read, parse, featurize and score, in batches."""
    model = scorer_lib.load(model_path)
    started = time.perf_counter()
    for start in range(0, len(files), 256):
        batch = files[start : start + 256]
        model.score_many(corpus.read_file(f, DEFAULT_MAX_BYTES) for f in batch)
    return len(files) / (time.perf_counter() - started)


def _bogofilter(
    how: str, train: corpus.Examples, test: corpus.Examples, files: list[Path], repeat: int
) -> Result:
    with tempfile.TemporaryDirectory() as db:
        train_s = _train_bogofilter(db, train.sources, train.labels)
        verdicts = _bogofilter_scores(db, test.sources)
        rates = []
        for _ in range(repeat):
            started = time.perf_counter()
            _bogofilter_scores(db, [str(f) for f in files])
            rates.append(len(files) / (time.perf_counter() - started))
        rss = _peak_rss(["bogofilter", "-d", db, "-T", "-B", *map(str, files[:2000])])
    return _bogofilter_result(
        "bogofilter",
        how,
        test,
        [verdicts[s] for s in test.sources],
        train_s=train_s,
        msgs_per_s=statistics.median(rates),
        peak_rss_mb=rss,
    )


def _bogofilter_shown_headers(how: str, train: corpus.Examples, test: corpus.Examples) -> Result:
    """bogofilter's accuracy on the messages without their collection artefacts."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as db:
        copies = {}
        for source in [*train.sources, *test.sources]:
            copy = Path(tmp) / Path(source).name
            copy.write_bytes(without_artefacts(Path(source).read_bytes()))
            copies[source] = str(copy)
        train_s = _train_bogofilter(db, [copies[s] for s in train.sources], train.labels)
        verdicts = _bogofilter_scores(db, [copies[s] for s in test.sources])
    return _bogofilter_result(
        "bogofilter, shown headers",
        how,
        test,
        [verdicts[copies[s]] for s in test.sources],
        train_s=train_s,
    )


def _train_bogofilter(db: str, files: list[str], labels: list[int]) -> float:
    """Train a fresh bogofilter database; returns the seconds it took."""
    started = time.perf_counter()
    for label, flag in ((0, "-n"), (1, "-s")):
        chosen = [f for f, y in zip(files, labels, strict=True) if y == label]
        _run_bulk(["bogofilter", "-d", db, flag, "-B"], chosen)
    return time.perf_counter() - started


def _bogofilter_result(
    tool: str,
    how: str,
    test: corpus.Examples,
    verdicts: list[tuple[str, float]],
    **speed: float,
) -> Result:
    """A Result from bogofilter's (verdict, score) per test message, in test order."""
    scores = np.array([score for _, score in verdicts])
    flagged = np.array([verdict == "S" for verdict, _ in verdicts])
    report = metrics.report(test.labels, scores, 0.5)
    y = np.asarray(test.labels).astype(bool)
    return Result(
        tool,
        how,
        report.roc_auc,
        report.recall_at_fpr_0_1pct,
        float(np.mean(flagged[~y])) if (~y).any() else 0.0,
        float(np.mean(flagged[y])) if y.any() else 0.0,
        speed.get("train_s", float("nan")),
        speed.get("msgs_per_s", float("nan")),
        speed.get("peak_rss_mb", float("nan")),
        scores,
        test.labels,
    )


def _run_bulk(argv: list[str], files: list[str]) -> str:
    output = []
    for start in range(0, len(files), 1000):  # stay far below the argv limit
        done = subprocess.run(
            ["taskset", "-c", CPU, *argv, *files[start : start + 1000]],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode > 2:  # 0, 1, 2: spam, ham, unsure (of the last message)
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()[:500]}")
        output.append(done.stdout)
    return "".join(output)


def _bogofilter_scores(db: str, files: list[str]) -> dict[str, tuple[str, float]]:
    out = _run_bulk(["bogofilter", "-d", db, "-T", "-B"], files)
    verdicts = {}
    for line in out.splitlines():
        path, verdict, score = line.rsplit(" ", 2)
        verdicts[path] = (verdict, float(score))
    return verdicts


def _peak_rss(argv: list[str]) -> float:
    """Peak resident set size (MB) of one child process running argv."""
    script = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=False, "
        "stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], check=True, capture_output=True, text=True, env=env
    )
    return int(done.stdout.strip()) / 1024


def _print(results: list[Result], n: int, corpus_dir: Path) -> None:
    print(f"# spamd vs bogofilter on {corpus_dir.name} ({n} messages; 80/20 splits)\n")
    print(
        "| split | tool | ROC AUC | recall @FPR<=0.1% | FPR @own thr | recall @own thr "
        "| train s | msg/s (1 core) | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.split} | {r.tool} | {r.auc:.4f} | {r.recall_at_0_1:.3f} | {r.fpr:.2%} "
            f"| {r.recall:.3f} | {r.train_s:.1f} | {_figure(r.msgs_per_s, ',.0f')} "
            f"| {_figure(r.peak_rss_mb, '.0f')} |"
        )


def _print_bootstrap(results: list[Result], rounds: int = 2000) -> None:
    """How sure each difference is: the test set resampled (within each class, with
    replacement), both tools' scores kept paired. Recall at FPR <= 0.1 % rests on
    the one or two highest-scoring test ham, so it moves with a single message."""
    print(f"\n# spamd minus bogofilter, paired bootstrap of the test set ({rounds} resamples)\n")
    print(
        "| split | against | test ham / spam | AUC: median [5 %, 95 %] | spamd >= "
        "| recall @FPR<=0.1%: median [5 %, 95 %] | spamd >= |"
    )
    print("|---|---|---|---|---|---|---|")
    for ours in (r for r in results if r.tool == "spamd"):
        y = np.asarray(ours.labels)
        ham, spam = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        for theirs in (r for r in results if r.tool != "spamd" and r.split == ours.split):
            rng = np.random.default_rng(0)
            auc, recall = [], []
            for _ in range(rounds):
                pick = np.concatenate([rng.choice(ham, ham.size), rng.choice(spam, spam.size)])
                labels, a, b = y[pick], ours.scores[pick], theirs.scores[pick]
                auc.append(roc_auc_score(labels, a) - roc_auc_score(labels, b))
                recall.append(_recall(labels, a) - _recall(labels, b))
            print(
                f"| {ours.split} | {theirs.tool} | {ham.size} / {spam.size} "
                f"| {_spread(auc, '+.4f')} | {np.mean(np.array(auc) >= 0):.0%} "
                f"| {_spread(recall, '+.3f')} | {np.mean(np.array(recall) >= 0):.0%} |"
            )


def _recall(labels: np.ndarray, scores: np.ndarray) -> float:
    return metrics.recall_at_fpr(labels, scores, 0.001)


def _spread(values: list[float], spec: str) -> str:
    low, mid, high = np.percentile(values, [5, 50, 95])
    return f"{mid:{spec}} [{low:{spec}}, {high:{spec}}]"


def _figure(value: float, spec: str) -> str:
    return "-" if np.isnan(value) else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
