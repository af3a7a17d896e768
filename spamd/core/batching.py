"""Fetch-ahead batching: the order in which a watcher fetches, decides and acts. Pure: no I/O.

A watcher handles new mail in batches of UIDs. While one batch is decided, the
next `ahead` are already fetched and being read (in other processes, with a
`PoolReader`); decided batches are acted on together once they hold
`act_every` pending actions (a MOVE costs the server a look at the whole
folder), and whatever is left at the end. Three steps, passed in:

    start(chunk)   fetch a chunk of UIDs and begin reading it -> a batch
    decide(batch)  wait for its readings, decide, record     -> decided
    act(decided)   carry out what a list of decided batches says (always called last)

`fetch_ahead` only says when each happens; what they do is the caller's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

C = TypeVar("C")  # a chunk of UIDs
B = TypeVar("B")  # a batch being read
D = TypeVar("D")  # a batch decided and recorded


def chunks(uids: Sequence[int], size: int) -> list[list[int]]:
    """The UIDs in order, `size` at a time (the last chunk may be shorter)."""
    return [list(uids[start : start + size]) for start in range(0, len(uids), size)]


def fetch_ahead(
    chunked: Iterable[C],
    *,
    start: Callable[[C], B],
    decide: Callable[[B], D],
    act: Callable[[list[D]], None],
    pending: Callable[[D], int],
    ahead: int,
    act_every: int,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Start each chunk, decide each batch once `ahead` more are started after it,
    and act on the decided ones whenever they hold `act_every` pending actions
    (checked as a chunk is started, while the ones ahead are read), then on the
    rest at the end. Once `stopped()`, no chunk is started; the started ones are
    still decided and acted on."""
    reading: deque[B] = deque()
    decided: list[D] = []
    for chunk in chunked:
        if stopped():
            break
        reading.append(start(chunk))
        if sum(pending(d) for d in decided) >= act_every:  # while two batches are read
            act(decided)
            decided = []
        if len(reading) > ahead:
            decided.append(decide(reading.popleft()))
    while reading:
        decided.append(decide(reading.popleft()))
    act(decided)
