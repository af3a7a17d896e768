"""Backlog: `spamd scan` of a 10,000-message INBOX, end to end, messages/second.

    python bench/backlog.py [--messages 10000] [--repeat 3]

Each run seeds a fresh user's INBOX of a sandbox Dovecot with mail from both
public corpora, then times the whole `spamd scan` command (start-up, FETCH,
parse, score, record, MOVE). Prints the median and spread of the runs, and the
CPU seconds per message of spamd's main process, its worker processes and
Dovecot's imap process, sampled from /proc: on a host that steals CPU time the
CPU cost is the steadier figure, and it bounds the rate on this many cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import imapclient
from _daemon import CpuMeter, account, corpus_files, spamd, write_config

from tests import sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    raws = [p.read_bytes() for p in corpus_files(args.messages)]
    users = {f"u{i}": "p" for i in range(args.repeat)}
    rates: list[float] = []
    per_message: list[float] = []
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
                meter = CpuMeter()
                sampler = threading.Thread(target=meter.follow, args=(proc,))
                sampler.start()
                out, _ = proc.communicate()  # drains its output, or it blocks writing it
                took = time.perf_counter() - started
                sampler.join()
            summary = out.decode().strip().splitlines()[-1]
            cpu = meter.totals()
            rates.append(args.messages / took)
            per_message.append(sum(cpu.values()) * 1000 / args.messages)
            shares = ", ".join(f"{group} {s:.1f} s" for group, s in sorted(cpu.items()))
            print(
                f"run {len(rates)}: {took:.1f} s, {rates[-1]:,.0f} msg/s; CPU {shares}: "
                f"{per_message[-1]:.2f} ms per message; host stole {meter.steal:.0%}; {summary}"
            )
    cores = len(os.sched_getaffinity(0))
    cpu_ms = statistics.median(per_message)
    print(
        f"spamd scan of {args.messages:,} messages: median {statistics.median(rates):,.0f} msg/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; target >= 1,000)\n"
        f"CPU per message, spamd and Dovecot together: median {cpu_ms:.2f} ms "
        f"(min {min(per_message):.2f}, max {max(per_message):.2f}); "
        f"{cores} cores fully used would allow {cores * 1000 / cpu_ms:,.0f} msg/s"
    )


if __name__ == "__main__":
    main()
