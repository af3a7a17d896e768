"""Time per hostile message: parse+score, and end to end through `spamd classify`.

Generates a few thousand messages of at most 256 KiB, of every kind in
`tests/reliability/hostile.py` (and every trick applied to the spam samples), and
times reading and scoring each with the shipped model, in this process. Each
message is timed `--runs` times and its median kept; printed are the worst
message (with its kind), the 99th percentile and the median. Then the slowest
kinds go through `spamd classify FILE` as a new process each (interpreter start
and model load included), median of `--runs`. Targets (issue 16): worst
parse+score <= 50 ms, end to end <= 1 s.

    .venv/bin/python bench/hostile.py [--messages 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spamd.core.scorer import load
from tests.reliability.hostile import KINDS, TRICKS

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "default.joblib"
MAX_SIZE = 256 * 1024


def messages(count: int, seed: int) -> list[tuple[str, bytes]]:
    """`count` messages: each kind at sizes from 1 KiB to 256 KiB (the largest always
    among them), and every trick on every spam sample."""
    rng = random.Random(seed)
    spam = [p.read_bytes() for p in sorted((ROOT / "samples" / "spam").glob("*.eml"))]
    out = [
        (f"trick:{name}", trick(raw)[:MAX_SIZE]) for name, trick in TRICKS.items() for raw in spam
    ]
    kinds = sorted(KINDS)
    for i in range(max(0, count - len(out))):
        name = kinds[i % len(kinds)]
        size = MAX_SIZE if i < 2 * len(kinds) else int(2 ** rng.uniform(10, 18))
        out.append((name, KINDS[name](rng, size)[:MAX_SIZE]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--end-to-end", type=int, default=5, help="slowest kinds through classify")
    args = parser.parse_args()

    load_before = os.getloadavg()
    scorer = load(MODEL)
    mail = messages(args.messages, args.seed)
    scorer.score(mail[0][1])  # warm up
    times: list[list[float]] = [[] for _ in mail]
    for _ in range(args.runs):
        for i, (_, raw) in enumerate(mail):
            started = time.perf_counter()
            scorer.score(raw)
            times[i].append((time.perf_counter() - started) * 1000)
    median = [statistics.median(t) for t in times]
    order = sorted(range(len(mail)), key=lambda i: -median[i])
    ms = sorted(median)
    worst_kind, worst_raw = mail[order[0]]
    print(
        f"messages: {len(mail)} ({len(KINDS)} kinds, {len(TRICKS)} tricks x spam samples), "
        f"at most {MAX_SIZE // 1024} KiB, {sum(len(r) for _, r in mail) / 2**20:.0f} MiB; "
        f"median of {args.runs} runs each"
    )
    p99 = ms[int(0.99 * (len(ms) - 1))]
    print(
        f"parse+score worst: {ms[-1]:.1f} ms ({worst_kind}, {len(worst_raw)} bytes); "
        f"p99 {p99:.1f} ms; median {statistics.median(ms):.2f} ms"
    )
    slowest: dict[str, tuple[float, bytes]] = {}  # kind -> its slowest message
    for i in order:
        slowest.setdefault(mail[i][0], (median[i], mail[i][1]))
    print("slowest kinds (their worst message):")
    for name, (t, _) in list(slowest.items())[:10]:
        print(f"  {t:7.1f} ms  {name}")

    # The floor: a small sample message (interpreter start, imports, model load).
    floor = [("sample spam (the floor)", (ROOT / "samples" / "spam" / "01-prize.eml").read_bytes())]
    ends = floor + [(name, raw) for name, (_, raw) in list(slowest.items())[: args.end_to_end]]
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, raw) in enumerate(ends):
            path = Path(tmp) / f"{n}.eml"
            path.write_bytes(raw)
            command = [sys.executable, "-m", "spamd.cli", "classify", "--model", str(MODEL)]
            runs = []
            for _ in range(args.runs):
                started = time.perf_counter()
                subprocess.run([*command, str(path)], check=True, capture_output=True, cwd=ROOT)
                runs.append(time.perf_counter() - started)
            each = ", ".join(f"{r:.2f}" for r in runs)
            print(
                f"end to end `spamd classify` {name} ({len(raw)} bytes): "
                f"median {statistics.median(runs):.2f} s (runs {each})"
            )
    before, after = (", ".join(f"{x:.2f}" for x in load) for load in (load_before, os.getloadavg()))
    print(f"load average (1, 5, 15 min) before: {before}; after: {after}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
