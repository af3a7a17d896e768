"""Latency from APPEND to the message being in Junk, with `spamd run` IDLE-ing.

    python bench/latency.py [--messages 200]

A second client APPENDs one spam message at a time to INBOX of a sandbox
Dovecot and polls STATUS Junk every 5 ms until it arrives. Dovecot delays IDLE
notifications by 0.5 s, so that is the floor. Prints median, p99 and spread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import imapclient
from _daemon import CORPORA, account, drain, percentile, spamd, spread, wait_for, write_config

from spamd.demo import sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    spam = sorted((CORPORA / "spamassassin_public" / "spam").glob("*.eml"))
    with sandbox.running({"u": "p"}) as server, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), [account(server.imap_port, "u", "p")])
        proc = spamd("run", "--config", str(config))
        try:
            wait_for(proc, "first_sync")
            drain(proc)
            client = imapclient.IMAPClient("127.0.0.1", server.imap_port, ssl=False)
            client.login("u", "p")
            latencies: list[float] = []
            junked = 0
            for path in spam:
                if len(latencies) >= args.messages:
                    break
                raw = path.read_bytes()
                started = time.perf_counter()
                client.append("INBOX", raw)
                deadline = started + 5.0
                while time.perf_counter() < deadline:
                    count = client.folder_status("Junk", [b"MESSAGES"])[b"MESSAGES"]
                    if count > junked:
                        junked = count
                        latencies.append(time.perf_counter() - started)
                        break
                    time.sleep(0.005)
                else:  # the model kept it in INBOX: not a latency sample
                    client.select_folder("INBOX")
                    client.delete_messages(client.search("ALL"))
                    client.expunge()
                    client.unselect_folder()
            client.logout()
        finally:
            proc.terminate()
            proc.wait()
    print(f"APPEND -> in Junk, seconds (IDLE): {spread(latencies)}")
    print(
        f"p50 {percentile(latencies, 50):.3f} s (target <= 0.6), "
        f"p99 {percentile(latencies, 99):.3f} s (target <= 0.8)"
    )


if __name__ == "__main__":
    main()
