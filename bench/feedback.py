"""Learning from corrections: a TREC-style replay against bogofilter, and the live daemon.

    python bench/feedback.py [--skip-replay] [--skip-live] [--trials 3]

**Replay** (the TREC spam track's "immediate feedback" protocol). The
SpamAssassin corpus is streamed in delivery-time order. A simulated user looks
at every verdict at once and corrects each mistake: a ham sent to Junk is
rescued, a spam let through is junked. spamd runs its real learning code on
that stream: `watcher.read` and `watcher.Memory.decide` over a `State`
(fingerprints and junked senders answer at once), and `retrain.retrain` (the
guarded retrain the daemon runs) after every correction, before the next
message; its seconds are reported. Both filters start from
what they learned from `modern_public` alone (spamd: a base model trained here
on it; bogofilter: a word list trained on the same files), so neither has seen
the stream. bogofilter then trains on every error and every "unsure"
(`-s`/`-n`), the way its documentation recommends; its unsure verdicts stay in
the inbox. bogofilter reads whole messages, so it is run twice: on the mail
with the collection artefacts the corpus README lists removed (the header
fields below other than the ones a mail client shows), and on the raw files,
where trace headers give the label away.

**Live**: `spamd run` against a sandbox Dovecot. Each trial delivers a spam
message, waits until spamd has moved it to Junk, moves it back to INBOX from
another IMAP client (the user's "not spam") and times from that MOVE until
spamd logs the account's refitted personal layer live (the default; with
``--shared``, ``calibrate: false``: the swap to the retrained shared model); the daemon's own
``correction_to_live`` (from when it observed the correction) is shown beside.
The retrain delay (debounce, default 1 s) is included. Then a **burst**: 21
junked spam; one is rescued, and while the retrain it caused runs the other 20
are rescued in one MOVE; counted: retrains until a live model knows all 21.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imapclient
import numpy as np
from _daemon import CORPORA, account, events, spamd, write_config
from _mail import without_artefacts

from spamd.core.features import DEFAULT_CHANNELS
from spamd.core.message import DEFAULT_MAX_BYTES, delivery_time
from spamd.core.scorer import load
from spamd.daemon import watcher
from spamd.demo import sandbox
from spamd.mail.ports import Fetched
from spamd.store.state import FILE_NAME, State
from spamd.store.versions import ModelStore
from spamd.training import corpus, metrics
from spamd.training import model as model_lib
from spamd.training.retrain import retrain

MAX_BYTES = DEFAULT_MAX_BYTES


@dataclass
class Stream:
    """One filter's run over the stream."""

    name: str
    scores: list[float] = field(default_factory=list)
    false_positives: int = 0
    false_negatives: int = 0
    mistakes: list[tuple[int, int]] = field(default_factory=list)  # (position, label)
    trained: int = 0
    retrain_seconds: list[float] = field(default_factory=list)
    refused: int = 0

    def count(self, label: int, junked: bool) -> bool:
        """Tally one verdict; True when it was a mistake."""
        if junked and not label:
            self.false_positives += 1
        elif label and not junked:
            self.false_negatives += 1
        else:
            return False
        self.mistakes.append((len(self.scores), label))
        return True


def stream_files() -> list[tuple[Path, int]]:
    source = CORPORA / "spamassassin_public"
    labelled = [(p, corpus.LABELS[c]) for c in corpus.CLASSES for p in (source / c).glob("*.eml")]
    times = [delivery_time(corpus.read_file(p, MAX_BYTES)) or float("inf") for p, _ in labelled]
    order = sorted(range(len(labelled)), key=lambda i: (times[i], labelled[i][0].name))
    return [labelled[i] for i in order]


def train_base(out: Path) -> Path:
    examples = corpus.load_examples([CORPORA / "modern_public"], DEFAULT_CHANNELS, MAX_BYTES)
    path = out / "base.joblib"
    model_lib.save(model_lib.train(examples.features, examples.labels), path)
    return path


class _Quiet:
    def bind(self, **_: object) -> _Quiet:
        return self

    def info(self, *_: object, **__: object) -> None:
        pass


def replay_spamd(stream: list[tuple[Path, int]], base: Path, state_dir: Path) -> Stream:
    result = Stream("spamd")
    store = ModelStore(state_dir, base)
    state = State(state_dir / FILE_NAME)
    memory = watcher.Memory("user", state, _Quiet())
    scorer = load(store.live_path())
    for n, (path, label) in enumerate(stream):
        raw = corpus.read_file(path, MAX_BYTES)
        reading = watcher.read(raw, scorer, MAX_BYTES)
        verdict = memory.decide(reading, scorer.threshold, mode="move")
        result.scores.append(reading.score)
        if not result.count(label, verdict.spam):
            continue
        memory.learn(
            watcher.correction(
                Fetched(n + 1, raw),
                reading,
                account="user",
                label="spam" if label else "ham",
                how="moved_to_junk" if label else "rescued",
                folder="Junk" if label else "INBOX",
                uidvalidity=1,
            )
        )
        outcome = retrain(store, state)
        result.trained += 1
        result.retrain_seconds.append(outcome.seconds)
        result.refused += not outcome.promoted
        scorer = load(store.live_path())
        if result.trained % 10 == 0:
            print(f"  spamd: {n + 1}/{len(stream)} messages, {result.trained} corrections")
    state.close()
    return result


def replay_bogofilter(
    stream: list[tuple[Path, int]], db: Path, mail_dir: Path, *, raw: bool
) -> Stream:
    result = Stream("bogofilter, raw mail" if raw else "bogofilter")
    db.mkdir()
    for flag, cls in (("-n", "ham"), ("-s", "spam")):
        files = sorted((CORPORA / "modern_public" / cls).glob("*.eml"))
        for start in range(0, len(files), 1000):
            chunk = [str(_as_read(f, mail_dir, raw)) for f in files[start : start + 1000]]
            subprocess.run(["bogofilter", "-d", str(db), flag, "-B", *chunk], check=True)
    for path, label in stream:
        mail = str(_as_read(path, mail_dir, raw))
        out = subprocess.run(
            ["bogofilter", "-d", str(db), "-T", "-I", mail],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        verdict, score = out[0], float(out[1])
        result.scores.append(score)
        result.count(label, verdict == "S")
        if verdict != ("S" if label else "H"):  # train on error and on unsure
            flag = "-s" if label else "-n"
            subprocess.run(["bogofilter", "-d", str(db), flag, "-I", mail], check=True)
            result.trained += 1
    return result


def _as_read(path: Path, mail_dir: Path, raw: bool) -> Path:
    """The file bogofilter reads: the corpus file, or a copy without collection artefacts."""
    if raw:
        return path
    out = mail_dir / f"{path.parent.name}-{path.name}"
    if not out.exists():
        out.write_bytes(without_artefacts(path.read_bytes()))
    return out


def print_replay(results: list[Stream], stream: list[tuple[Path, int]]) -> None:
    labels = [label for _, label in stream]
    n_spam = sum(labels)
    print(
        f"\n# Immediate-feedback replay: SpamAssassin corpus by delivery time "
        f"({len(labels)} messages: {len(labels) - n_spam} ham, {n_spam} spam)\n"
    )
    print("| filter | false positives | false negatives | errors | ROC AUC | trained on |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        auc = metrics.report(labels, np.asarray(r.scores), 0.5).roc_auc
        errors = r.false_positives + r.false_negatives
        print(
            f"| {r.name} | {r.false_positives} | {r.false_negatives} | {errors} | "
            f"{auc:.4f} | {r.trained} |"
        )
    fifth = len(labels) / 5
    print("\nfalse positives / false negatives in each fifth of the stream:\n")
    for r in results:
        cells = []
        for k in range(5):
            part = [label for at, label in r.mistakes if k * fifth <= at - 1 < (k + 1) * fifth]
            cells.append(f"{part.count(0)}/{part.count(1)}")
        print(f"- {r.name}: {'  '.join(cells)}")
    for r in results:
        if r.retrain_seconds:
            s = r.retrain_seconds
            print(
                f"\n{r.name}: {len(s)} retrains, {r.refused} refused by the guard; seconds per "
                f"retrain median {statistics.median(s):.2f} (min {min(s):.2f}, max {max(s):.2f})"
            )


def replay(bogofilter_too: bool) -> None:
    stream = stream_files()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("training the base model on modern_public ...")
        base = train_base(root)
        (root / "state").mkdir()
        print("replaying through spamd ...")
        results = [replay_spamd(stream, base, root / "state")]
        if bogofilter_too:
            (root / "mail").mkdir()
            for raw in (False, True):
                print("replaying through bogofilter ...")
                db = root / f"bogofilter-{raw}"
                results.append(replay_bogofilter(stream, db, root / "mail", raw=raw))
        print_replay(results, stream)


# What the daemon logs for a fit starting, going live, refused or failing: the account's
# personal layer (the default), or the shared model (`calibrate: false`).
LAYER = ("layer_fitting", "layer_fitted", "layer_refused", "layer_fit_failed")
SHARED = ("retraining", "retrained", "retrained", "retrain_failed")


def live(trials: int, shared: bool = False, kept: int = 0) -> None:
    spam = sorted((CORPORA / "modern_public" / "spam").glob("*.eml"))[: trials * 5 + 60]
    took: list[float] = []
    observed: list[float] = []
    names = SHARED if shared else LAYER
    print(f"\nlive: {'the shared model (calibrate: false)' if shared else 'personal layers'}")
    with sandbox.running({"u": "p"}) as server, tempfile.TemporaryDirectory() as tmp:
        extra = {"calibrate": False} if shared else {}
        config = write_config(Path(tmp), [account(server.imap_port, "u", "p", **extra)])
        client = imapclient.IMAPClient("127.0.0.1", server.imap_port, ssl=False)
        client.login("u", "p")
        if kept:  # the account's existing mail, which it calibrates on
            sa = CORPORA / "spamassassin_public"
            for folder, label in (("INBOX", "ham"), ("Junk", "spam")):
                for path in sorted((sa / label).glob("*.eml"))[:kept]:
                    client.append(folder, path.read_bytes())
        proc = spamd("run", "--config", str(config))
        stream = events(proc)
        try:
            next(e for e in stream if e.get("event") == "junk_baseline")
            if kept and not shared:
                done = next(
                    e for e in stream if e.get("event") in ("calibrated", "calibration_refused")
                )
                print(
                    f"calibrated on {done.get('ham')} kept + {done.get('spam')} junked: "
                    f"threshold {done.get('threshold')}, layer {done.get('layer_bytes')} bytes, "
                    f"{done.get('seconds')} s"
                )
            for raw_path in spam:
                if len(took) == trials:
                    break
                client.append("INBOX", raw_path.read_bytes())
                verdict = next(e for e in stream if delivered(e))
                if verdict.get("action") != "move":
                    continue  # the model let it through: no mistake to correct
                next(e for e in stream if e.get("event") == "arrived_in_junk")
                client.select_folder("Junk")
                started = time.perf_counter()
                client.move(client.search("ALL")[-1:], "INBOX")  # the newest: this one
                client.unselect_folder()
                done = next(e for e in stream if e.get("event") in names[1:])
                if done["event"] == names[3] or (shared and not done.get("promoted")):
                    raise SystemExit(f"retrain failed: {done}")
                if done["event"] == names[2]:
                    print(f"refused by the guard: {done.get('refused')}")
                    continue
                if shared:
                    next(e for e in stream if e.get("event") == "model_swapped")
                took.append(time.perf_counter() - started)
                live_event = next(e for e in stream if e.get("event") == "correction_to_live")
                observed.append(float(live_event["seconds"]))  # type: ignore[arg-type]
                print(
                    f"trial {len(took)}: correction -> live model in {took[-1]:.2f} s "
                    f"(daemon: {observed[-1]:.2f} s from observing it; the fit itself "
                    f"{done.get('seconds')} s)"
                )
            burst(client, stream, spam[-60:], names, corrections_before=len(took))
        finally:
            client.logout()
            proc.terminate()
            proc.wait(10)
    print(
        f"\ncorrection to live model in the daemon: median {statistics.median(took):.2f} s "
        f"(min {min(took):.2f}, max {max(took):.2f}; {len(took)} trials; target < 10 s); "
        f"as the daemon times it from observing the correction: median "
        f"{statistics.median(observed):.2f} s"
    )


BURST = 20


def delivered(event: dict[str, object]) -> bool:
    """The verdict on a delivered message (not on the copy a rescue puts in INBOX)."""
    return event.get("event") == "message" and event.get("reason") not in ("rescued", "known-spam")


def burst(
    client: imapclient.IMAPClient,
    stream: Iterator[dict[str, object]],
    spam: list[Path],
    names: tuple[str, str, str, str],
    corrections_before: int,
) -> None:
    """Rescue one junked spam, then `BURST` more while the retrain it started runs."""
    junked = 0
    for path in spam:
        client.append("INBOX", path.read_bytes())
        if next(e for e in stream if delivered(e)).get("action") == "move":
            junked += 1
            next(e for e in stream if e.get("event") == "arrived_in_junk")
        if junked == BURST + 1:
            break
    if junked < BURST + 1:
        raise SystemExit(f"only {junked} of the burst's spam were junked: use more --trials")
    client.select_folder("Junk")
    first, *rest = client.search("ALL")[-(BURST + 1) :]  # not the --kept sample
    client.move([first], "INBOX")
    next(e for e in stream if e.get("event") == names[0])
    started = time.perf_counter()
    client.move(rest, "INBOX")  # while that retrain runs
    client.unselect_folder()
    total = corrections_before + BURST + 1
    retrains = []
    while True:
        done = next(e for e in stream if e.get("event") in names[1:])
        retrains.append(done)
        if done["event"] == names[1] and done["corrections"] == total and done["promoted"]:
            break
        if done["event"] == names[2] and done.get("corrections") == total:
            print(f"\nburst: the fit with all {total} corrections was refused: {done['refused']}")
            return
        if len(retrains) > 5:
            raise SystemExit(f"the burst is not live after {len(retrains)} retrains: {retrains}")
    print(
        f"\nburst of {BURST} rescues during a retrain: all {total} corrections live after "
        f"{len(retrains)} retrain(s) (the one running, then "
        f"{len(retrains) - 1} more), {time.perf_counter() - started:.2f} s after the burst"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--no-bogofilter", action="store_true", help="replay spamd only")
    parser.add_argument("--trials", type=int, default=3, help="live trials")
    parser.add_argument(
        "--shared", action="store_true", help="live: calibrate: false (the shared retrain)"
    )
    parser.add_argument(
        "--kept",
        type=int,
        default=0,
        help="live: first put this many SpamAssassin ham in INBOX and spam in Junk",
    )
    args = parser.parse_args()
    if not args.skip_replay:
        replay(not args.no_bogofilter)
    if not args.skip_live:
        live(args.trials, args.shared, args.kept)


if __name__ == "__main__":
    main()
