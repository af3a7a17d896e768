"""Fetch-ahead batching (pure): which UIDs are fetched, decided and acted on, and when."""

from __future__ import annotations

from spamd.core.batching import chunks, fetch_ahead


class Pipeline:
    """Runs `fetch_ahead` over chunks, keeping what happened in order."""

    def __init__(self, pending_per_batch: int = 0) -> None:
        self.timeline: list[tuple[str, int]] = []  # ("start" | "decide", first UID of a chunk)
        self.acts: list[list[int]] = []  # per act: the first UIDs of the batches acted on
        self.decided: list[int] = []  # UIDs, as decided
        self._pending = pending_per_batch

    def run(
        self, uids: list[int], size: int, *, ahead: int, act_every: int, stop_after: int = 0
    ) -> None:
        def start(chunk: list[int]) -> list[int]:
            self.timeline.append(("start", chunk[0]))
            return chunk

        def decide(batch: list[int]) -> list[int]:
            self.timeline.append(("decide", batch[0]))
            self.decided += batch
            return batch

        def act(decided: list[list[int]]) -> None:
            self.timeline.append(("act", len(decided)))
            self.acts.append([batch[0] for batch in decided])

        def stopped() -> bool:
            started = sum(what == "start" for what, _ in self.timeline)
            return bool(stop_after) and started >= stop_after

        fetch_ahead(
            chunks(uids, size),
            start=start,
            decide=decide,
            act=act,
            pending=lambda batch: self._pending,
            ahead=ahead,
            act_every=act_every,
            stopped=stopped,
        )


def test_chunks_cover_every_uid_once_in_order() -> None:
    assert chunks([3, 5, 8, 9, 12, 20, 21], 3) == [[3, 5, 8], [9, 12, 20], [21]]
    assert chunks([], 200) == []


def test_every_uid_is_decided_once_in_order_and_acted_on_once() -> None:
    uids = list(range(1, 12))
    run = Pipeline()
    run.run(uids, 4, ahead=1, act_every=1000)
    assert run.decided == uids
    assert run.acts == [[1, 5, 9]]  # few pending actions: one act, at the end


def test_the_next_batch_is_fetched_before_this_one_is_decided() -> None:
    run = Pipeline()
    run.run(list(range(1, 10)), 3, ahead=1, act_every=1000)
    assert run.timeline == [
        ("start", 1),
        ("start", 4),  # read while batch 1 is decided
        ("decide", 1),
        ("start", 7),
        ("decide", 4),
        ("decide", 7),
        ("act", 3),
    ]


def test_no_more_batches_are_read_ahead_than_asked() -> None:
    for ahead in (0, 1, 2):
        run = Pipeline()
        run.run(list(range(1, 21)), 2, ahead=ahead, act_every=1000)
        in_flight = most = 0
        for what, _ in run.timeline:
            in_flight += {"start": 1, "decide": -1}.get(what, 0)
            most = max(most, in_flight)
        assert most == ahead + 1, ahead


def test_decided_batches_are_acted_on_once_they_hold_enough_pending_actions() -> None:
    run = Pipeline(pending_per_batch=3)
    run.run(list(range(1, 9)), 2, ahead=1, act_every=6)
    # Batches 1 and 3 hold 6 pending actions, enough, when batch 7 is started: acted
    # on then (while 5 and 7 are read), the rest at the end.
    assert run.acts == [[1, 3], [5, 7]]
    assert run.timeline.index(("act", 2)) == run.timeline.index(("start", 7)) + 1


def test_a_stop_starts_no_more_batches_but_finishes_those_started() -> None:
    run = Pipeline()
    run.run(list(range(1, 21)), 2, ahead=1, act_every=1000, stop_after=2)
    assert run.decided == [1, 2, 3, 4]
    assert run.acts == [[1, 3]]


def test_nothing_new_still_acts_once() -> None:
    run = Pipeline()
    run.run([], 200, ahead=1, act_every=1000)
    assert run.timeline == [("act", 0)]
    assert run.acts == [[]]
