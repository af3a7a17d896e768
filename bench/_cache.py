"""The two shared corpora as features, read once and cached (bench/results/cache/).

Each message is read the way a stranger's mailbox would show it: only the header
fields a mail client shows (`_mail.without_artefacts`) and without the `[SPAM]`
subject tag an upstream filter added (modern_public README, "Upstream verdict
headers"). The cache is keyed by the code that reads mail, so a change to the
parser or the features reads the corpora again.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _mail import without_artefacts  # noqa: E402

from spamd.core.features import CHANNELS, extract  # noqa: E402
from spamd.core.message import DEFAULT_MAX_BYTES, delivery_time, parse  # noqa: E402
from spamd.training import corpus  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
CACHE = ROOT / "bench" / "results" / "cache"
NAMES = ("spamassassin_public", "modern_public")
_SPAM_TAG = re.compile(rb"^(Subject:[ \t]*)((?:\[SPAM\]|\*\*\*SPAM\*\*\*)[ \t]*)+", re.I | re.M)


def as_shown(raw: bytes) -> bytes:
    """A corpus message as a user's mailbox would hold it, without other filters' verdicts."""
    return _SPAM_TAG.sub(rb"\1", without_artefacts(raw))


READING = ("spamd/core/message.py", "spamd/core/features.py", "bench/_mail.py", "bench/_cache.py")


def key(name: str, modules: tuple[str, ...] = READING) -> str:
    """A digest of a name and the code that made what is cached under it."""
    digest = hashlib.sha256(name.encode())
    for module in modules:
        digest.update((ROOT / module).read_bytes())
    return digest.hexdigest()[:16]


def examples(name: str) -> corpus.Examples:
    """All channels of one corpus (ham first, then spam, files in name order)."""
    path = CACHE / f"{name}-{key(name)}.pickle"
    if path.exists():
        with path.open("rb") as handle:
            cached: corpus.Examples = pickle.load(handle)  # noqa: S301 - our own cache file
            return cached
    out = corpus.Examples()
    for mail, label in corpus.read_corpus(CORPORA / name, DEFAULT_MAX_BYTES):
        raw = as_shown(mail.raw)
        out.features.append(extract(parse(raw, DEFAULT_MAX_BYTES), CHANNELS))
        out.labels.append(label)
        out.times.append(delivery_time(mail.raw) or math.inf)
        out.sources.append(mail.source)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        pickle.dump(out, handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return out


if __name__ == "__main__":
    for corpus_name in NAMES:
        e = examples(corpus_name)
        print(corpus_name, len(e.labels), "messages,", sum(e.labels), "spam")
