"""Learning: time from a user's correction to the retrained model being live.

    python bench/feedback.py [--trials 3]

Runs `spamd run` against a sandbox Dovecot. Each trial delivers a spam message,
waits until spamd has moved it to Junk, then moves it back to INBOX from another
IMAP client (the user's "not spam") and times until spamd logs the swap to the
retrained model. Prints each trial and the median. The retrain delay (debounce)
is the configured default, 2 s, and is included.

Not here yet (see the README): the TREC immediate-feedback replay of the
SpamAssassin corpus against bogofilter.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import imapclient
from _daemon import CORPORA, account, events, spamd, write_config

from spamd import sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    spam = sorted((CORPORA / "modern_public" / "spam").glob("*.eml"))[: args.trials * 5]
    took: list[float] = []
    with sandbox.running({"u": "p"}) as server, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), [account(server.imap_port, "u", "p")])
        proc = spamd("run", "--config", str(config))
        stream = events(proc)
        client = imapclient.IMAPClient("127.0.0.1", server.imap_port, ssl=False)
        client.login("u", "p")
        try:
            next(e for e in stream if e.get("event") == "junk_baseline")
            for raw_path in spam:
                if len(took) == args.trials:
                    break
                client.append("INBOX", raw_path.read_bytes())
                verdict = next(e for e in stream if e.get("event") == "message")
                if verdict.get("action") != "move":
                    continue  # the model let it through: no mistake to correct
                next(e for e in stream if e.get("event") == "arrived_in_junk")
                client.select_folder("Junk")
                started = time.perf_counter()
                client.move(client.search("ALL"), "INBOX")
                client.unselect_folder()
                swapped = next(
                    e for e in stream if e.get("event") in ("model_swapped", "retrain_failed")
                )
                if swapped["event"] != "model_swapped":
                    raise SystemExit(f"retrain failed: {swapped}")
                took.append(time.perf_counter() - started)
                print(f"trial {len(took)}: correction -> live model in {took[-1]:.2f} s")
        finally:
            client.logout()
            proc.terminate()
            proc.wait(10)
    print(
        f"correction to live model: median {statistics.median(took):.2f} s "
        f"(min {min(took):.2f}, max {max(took):.2f}; {len(took)} trials; target < 10 s)"
    )


if __name__ == "__main__":
    main()
