"""Resident memory of `spamd run` with 1 account and with many accounts IDLE-ing.

    python bench/memory.py [--accounts 200] [--repeat 3]

Starts a sandbox Dovecot with N users, runs `spamd run` with 1 and then N
accounts (one INBOX each, IDLE), waits until every account has synced and
IDLEs for a few seconds, and reads VmRSS from /proc. Prints the median of
--repeat readings and the cost per extra account.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _daemon import account, rss_kb, spamd, wait_for, write_config

from spamd.demo import sandbox


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
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
