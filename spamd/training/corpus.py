"""Reading mail from disk: labelled corpora for training, and files to classify.

A corpus is a directory with a ``ham`` and a ``spam`` entry. Each entry is a
directory of one-message files (walked recursively), a Maildir (``cur``/``new``)
or an mbox file (``ham.mbox`` also works). Everything is streamed: nothing holds
a whole corpus of raw messages in memory.
"""

from __future__ import annotations

import mailbox
import math
import os
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spamd.core.features import Features, extract
from spamd.core.message import delivery_time, parse
from spamd.errors import InputError

CLASSES = ("ham", "spam")
LABELS = {"ham": 0, "spam": 1}


@dataclass(frozen=True, slots=True)
class Mail:
    source: str  # a path, "path:key" for a message inside an mbox/Maildir, or "-"
    raw: bytes
    error: str = ""  # set instead of raw when the file could not be read


def class_source(corpus: Path, name: str) -> Path:
    """The ham/ or spam/ entry of a corpus directory, or a clear error."""
    if not corpus.is_dir():
        raise InputError("corpus directory not found", path=corpus)
    for candidate in (corpus / name, corpus / f"{name}.mbox"):
        if candidate.exists():
            return candidate
    raise InputError(f"no {name}/ folder, Maildir or {name}.mbox inside", path=corpus)


def read_class(source: Path, max_bytes: int) -> Iterator[Mail]:
    """Every message of one class entry; raises InputError if there are none."""
    count = 0
    for mail in _read_entry(source, max_bytes):
        count += 1
        yield mail
    if count == 0:
        raise InputError("holds no messages", path=source)


def read_corpus(corpus: Path, max_bytes: int) -> Iterator[tuple[Mail, int]]:
    """(message, label) pairs of a corpus, ham first; checks both classes exist first."""
    sources = [(class_source(corpus, name), LABELS[name]) for name in CLASSES]
    for source, label in sources:
        for mail in read_class(source, max_bytes):
            yield mail, label


def _read_entry(source: Path, max_bytes: int) -> Iterator[Mail]:
    if source.is_file():
        yield from _read_mbox(source, max_bytes)
    elif (source / "cur").is_dir() or (source / "new").is_dir():
        yield from _read_maildir(source, max_bytes)
    else:
        for path in walk_files(source):
            yield Mail(str(path), read_file(path, max_bytes))


def walk_files(directory: Path) -> Iterator[Path]:
    """Files below `directory` in a stable order, skipping hidden ones; streams."""
    for root, dirs, files in os.walk(directory, onerror=_walk_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _walk_error(error: OSError) -> None:
    raise InputError(f"cannot list ({error.strerror})", path=error.filename)


def read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(max_bytes + 1)  # one byte more: the parser notes truncation
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=path) from None


def _read_mbox(path: Path, max_bytes: int) -> Iterator[Mail]:
    try:
        box = mailbox.mbox(path, create=False)
        keys = box.keys()
    except (OSError, mailbox.Error) as exc:
        raise InputError(f"cannot read as an mbox file ({exc})", path=path) from None
    try:
        for key in keys:
            yield Mail(f"{path}:{key}", box.get_bytes(key)[: max_bytes + 1])
    finally:
        box.close()


def _read_maildir(path: Path, max_bytes: int) -> Iterator[Mail]:
    try:
        box = mailbox.Maildir(path, create=False)
        keys = sorted(box.keys())
    except (OSError, mailbox.Error) as exc:
        raise InputError(f"cannot read as a Maildir ({exc})", path=path) from None
    for key in keys:
        yield Mail(f"{path}:{key}", box.get_bytes(key)[: max_bytes + 1])


def read_inputs(targets: list[str], max_bytes: int) -> Iterator[Mail]:
    """Files, directories (walked) and "-" (standard input) named on a command line."""
    for target in targets:
        if target == "-":
            yield _not_empty(Mail("-", sys.stdin.buffer.read(max_bytes + 1)))
            continue
        path = Path(target)
        if not path.exists():
            yield Mail(target, b"", error=str(InputError("no such file or directory", path=path)))
        for file in walk_files(path) if path.is_dir() else [path] if path.exists() else []:
            try:
                yield _not_empty(Mail(str(file), read_file(file, max_bytes)))
            except InputError as exc:
                yield Mail(str(file), b"", error=str(exc))


def _not_empty(mail: Mail) -> Mail:
    """Nothing at all is no message (as the HTTP API says with a 400): an error, not a score."""
    if mail.raw.strip():
        return mail
    what = "standard input" if mail.source == "-" else "the file"
    error = InputError(f"{what} is empty: give it a message (headers and body)", path=mail.source)
    return Mail(mail.source, b"", error=str(error))


@dataclass
class Examples:
    """Labelled training data, as features (raw messages are not kept)."""

    features: list[Features] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # delivery time; +inf when unknown
    sources: list[str] = field(default_factory=list)

    def subset(self, indices: Iterable[int]) -> Examples:
        picked = list(indices)
        return Examples(
            [self.features[i] for i in picked],
            [self.labels[i] for i in picked],
            [self.times[i] for i in picked],
            [self.sources[i] for i in picked],
        )


def load_examples(
    corpora: Iterable[Path],
    channels: Collection[str],
    max_bytes: int,
    progress: Callable[[Iterator[tuple[Mail, int]]], Iterable[tuple[Mail, int]]] = iter,
) -> Examples:
    """Read, parse and featurize labelled corpora, one message at a time."""
    examples = Examples()
    for corpus in corpora:
        for mail, label in progress(read_corpus(corpus, max_bytes)):
            examples.features.append(extract(parse(mail.raw, max_bytes), channels))
            examples.labels.append(label)
            examples.times.append(delivery_time(mail.raw) or math.inf)
            examples.sources.append(mail.source)
    return examples
