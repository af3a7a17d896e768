"""Shared helpers for the daemon benchmarks: a sandbox Dovecot, seeded mailboxes, `spamd run`."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"
MODEL = ROOT / "models" / "default.joblib"


def corpus_files(limit: int) -> list[Path]:
    """Ham and spam from both public corpora, interleaved, `limit` in all (repeating if needed)."""
    files = sorted(CORPORA.glob("*/ham/*.eml")) + sorted(CORPORA.glob("*/spam/*.eml"))
    if not files:
        raise SystemExit(f"corpora not found under {CORPORA}")
    random.Random(0).shuffle(files)
    return [files[i % len(files)] for i in range(limit)]


def account(port: int, user: str, password: str, **extra: object) -> dict[str, object]:
    return {
        "name": user,
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "username": user,
        "password": password,
        **extra,
    }


def write_config(tmp: Path, accounts: list[dict[str, object]]) -> Path:
    path = tmp / "spamd.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp / "state"),
                "model": {"path": str(MODEL)},
                "accounts": accounts,
                "log": {"format": "json"},
            }
        )
    )
    return path


def spamd(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "spamd.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def events(proc: subprocess.Popen[bytes]) -> Iterator[dict[str, object]]:
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            yield json.loads(line)
        except ValueError:
            print(line.decode(errors="replace"), end="", file=sys.stderr)


def wait_for(proc: subprocess.Popen[bytes], event: str, count: int = 1) -> None:
    seen = 0
    for e in events(proc):
        if e.get("event") == event:
            seen += 1
            if seen >= count:
                return
    raise SystemExit(f"spamd exited before {count} {event!r} events")


def drain(proc: subprocess.Popen[bytes]) -> threading.Thread:
    """Read and drop the rest of spamd's output in the background: a full pipe blocks it."""
    assert proc.stdout is not None
    thread = threading.Thread(target=proc.stdout.read, daemon=True)
    thread.start()
    return thread


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class CpuMeter:
    """CPU seconds used by a process tree and by Dovecot's imap processes, sampled
    from /proc while the tree runs (its workers are never reaped into its rusage).
    On a machine whose host steals CPU time, CPU seconds are steadier than wall time."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        self.seen: dict[int, tuple[str, float]] = {}  # pid -> (group, cpu seconds)
        self.steal = 0.0  # share of the machine's CPU time the host took while following

    def follow(self, proc: subprocess.Popen[bytes], every: float = 0.1) -> None:
        before = _host_ticks()
        while proc.poll() is None:
            self.sample(proc.pid)
            time.sleep(every)
        steal, total = (b - a for a, b in zip(before, _host_ticks(), strict=True))
        self.steal = steal / max(1, total)

    def sample(self, root: int) -> None:
        tree = {root}
        for pid in list(tree):
            tree |= self._descendants(pid)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                comm = (entry / "comm").read_text().strip()
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            group = "spamd main" if pid == root else "spamd workers" if pid in tree else comm
            if group.startswith("spamd") or comm == "imap":
                self.seen[pid] = (group, (int(fields[11]) + int(fields[12])) / self.TICK)

    def _descendants(self, pid: int) -> set[int]:
        found: set[int] = set()
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                children = {int(c) for c in task.read_text().split()}
            except OSError:
                continue
            for child in children:
                found |= {child, *self._descendants(child)}
        return found

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for group, seconds in self.seen.values():
            out[group] = out.get(group, 0.0) + seconds
        return out


def _host_ticks() -> tuple[int, int]:
    """Stolen and all CPU ticks of the machine so far (/proc/stat)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return ticks[7], sum(ticks)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def spread(values: Sequence[float]) -> str:
    return (
        f"median {statistics.median(values):.3f}, p99 {percentile(values, 99):.3f}, "
        f"min {min(values):.3f}, max {max(values):.3f} (n={len(values)})"
    )
