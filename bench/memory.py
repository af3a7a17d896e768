"""Resident memory of `spamd run` with 1 account and with many accounts IDLE-ing,
and what one account's personal layer costs.

    python bench/memory.py [--accounts 200] [--repeat 3] [--layer-sample 1000]

Starts a sandbox Dovecot with N users, runs `spamd run` with 1 and then N
accounts (one INBOX each, IDLE; calibration on, as by default: each empty
account is refused and stays cautious), waits until every account has synced and
IDLEs for a few seconds, and reads VmRSS from /proc. Prints the median of
--repeat readings and the cost per extra account.

**Layer**: an account calibrated on its own mail and without corrections holds
its personal layer. One is fitted (`personal.fit`, as `spamd.training.layers`
does) on --layer-sample ham and as many spam of the SpamAssassin corpus, stored
as the daemon stores it, then loaded by 50 `AccountModel`s that each score a
message once (building their `PersonalScorer`); tracemalloc gives the bytes
each holds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import structlog
from _daemon import CORPORA, account, rss_kb, spamd, wait_for, write_config

from spamd.core import personal
from spamd.core.scorer import load
from spamd.daemon.personal import AccountModel
from spamd.demo import sandbox
from spamd.store.accounts import AccountFiles, write_private

MODEL = Path(__file__).resolve().parent.parent / "models" / "default.joblib"


def measure(port: int, users: list[str], settle: float) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), [account(port, u, "p") for u in users])
        proc = spamd("run", "--config", str(config))
        try:
            wait_for(proc, "first_sync", count=len(users))
            time.sleep(settle)
            return rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.communicate(timeout=60)  # drain its log, or it blocks writing it


def layer_bytes(sample: int, accounts: int = 50) -> tuple[int, int, float]:
    """(the layer's arrays, bytes held per account with it loaded and used, its file KB)."""
    base = load(MODEL)
    files = sorted((CORPORA / "spamassassin_public" / "ham").glob("*.eml"))[:sample]
    spam = sorted((CORPORA / "spamassassin_public" / "spam").glob("*.eml"))[:sample]
    designs, labels = [], []
    for label, paths in ((0, files), (1, spam)):
        for path in paths:
            designs.append(base.design(base.features(path.read_bytes())))
            labels.append(label)
    layer = personal.fit(designs, labels)
    probe = files[0].read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        log = structlog.get_logger()
        held = []
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(accounts):
            own = AccountModel(AccountFiles(Path(tmp), f"user{i}"), lambda: base, log)
            write_private(own.files.layer, personal.to_bytes(layer, base.version))
            own.load()
            own().score(probe)
            held.append(own)
        per_account = (tracemalloc.get_traced_memory()[0] - before) // accounts
        tracemalloc.stop()
        file_kb = held[0].files.layer.stat().st_size / 1024
    return layer.nbytes, per_account, file_kb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--layer-sample", type=int, default=1000)
    args = parser.parse_args()
    arrays, held, file_kb = layer_bytes(args.layer_sample)
    print(
        f"personal layer of an account without corrections ({args.layer_sample} kept + "
        f"{args.layer_sample} junked): arrays {arrays / 1024:.0f} KB, held per account "
        f"{held / 1024:.0f} KB (target <= 100 KB), file {file_kb:.0f} KB"
    )
    users = [f"u{i}" for i in range(args.accounts)]
    with sandbox.running(dict.fromkeys(users, "p")) as server:
        one = [measure(server.imap_port, users[:1], args.settle) for _ in range(args.repeat)]
        many = [measure(server.imap_port, users, args.settle) for _ in range(args.repeat)]
    one_mb, many_mb = statistics.median(one) / 1024, statistics.median(many) / 1024
    per_account = (statistics.median(many) - statistics.median(one)) / (args.accounts - 1)
    print(f"spamd run, 1 account: RSS median {one_mb:.1f} MB (readings {_mb(one)})")
    print(
        f"spamd run, {args.accounts} accounts: RSS median {many_mb:.1f} MB (readings {_mb(many)})"
    )
    print(f"per extra account: {per_account:.0f} KB (target <= 100 KB); total target <= 150 MB")


def _mb(readings: list[int]) -> list[float]:
    return [round(kb / 1024, 1) for kb in readings]


if __name__ == "__main__":
    main()
