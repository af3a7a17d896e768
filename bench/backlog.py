"""Backlog: `spamd scan` of a 10,000-message INBOX, end to end, messages/second.

    python bench/backlog.py [--messages 10000] [--repeat 3]

Each run seeds a fresh user's INBOX of a sandbox Dovecot with mail from both
public corpora, then times the whole `spamd scan` command (start-up, FETCH,
parse, score, record, MOVE). Prints the median and spread of the runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import imapclient
from _daemon import account, corpus_files, spamd, write_config

from spamd import sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    raws = [p.read_bytes() for p in corpus_files(args.messages)]
    users = {f"u{i}": "p" for i in range(args.repeat)}
    rates = []
    with sandbox.running(users) as server:
        for user in users:
            server.seed_maildir(user, raws)
            client = imapclient.IMAPClient("127.0.0.1", server.imap_port, ssl=False)
            client.login(user, "p")
            client.select_folder("INBOX")  # let Dovecot index the new files before timing
            client.logout()
            with tempfile.TemporaryDirectory() as tmp:
                config = write_config(Path(tmp), [account(server.imap_port, user, "p")])
                started = time.perf_counter()
                proc = spamd("scan", "--config", str(config), "--account", user)
                out, _ = proc.communicate()
                took = time.perf_counter() - started
            summary = out.decode().strip().splitlines()[-1]
            rates.append(args.messages / took)
            print(f"run {len(rates)}: {took:.1f} s, {rates[-1]:,.0f} msg/s; {summary}")
    print(
        f"spamd scan of {args.messages:,} messages: median {statistics.median(rates):,.0f} msg/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; target >= 1,000)"
    )


if __name__ == "__main__":
    main()
