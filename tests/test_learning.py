"""Learning from users: corrections by moving mail, memory of them, guarded retraining."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from spamd.core import learning, policy
from spamd.core.features import extract
from spamd.core.learning import Correction, Fingerprints, fingerprint
from spamd.core.message import parse
from spamd.core.scorer import Scorer
from spamd.daemon.service import LiveModel, Service
from spamd.daemon.watcher import FolderWatcher, Memory, Readings, read_all
from spamd.mail.imap import Connection
from spamd.ops.config import Config
from spamd.store.state import State, state_path
from spamd.store.versions import BASE, ModelStore
from spamd.training import model as model_lib
from spamd.training import retrain
from tests.conftest import (
    HAM,
    ROOT,
    SHIPPED_MODEL,
    SPAM,
    Box,
    Events,
    running_service,
    spamd_config,
    synced,
    wait_until,
)

# -- fingerprints (pure) -----------------------------------------------------------

OFFER = (
    "Dear {name}, your account {number} has been selected for our exclusive reward "
    "programme. Claim the gift card today by confirming your details on the secure "
    "page below before the offer expires at midnight. Reference {ref}."
)


def offer(name: str, number: str, ref: str, message_id: str = "<a@x>") -> bytes:
    body = OFFER.format(name=name, number=number, ref=ref)
    return (
        f"From: promo@deals.example\r\nSubject: Reward waiting\r\nMessage-ID: {message_id}\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def fingerprint_of(raw: bytes) -> int | None:
    return fingerprint(extract(parse(raw)))


def test_near_identical_copies_share_a_fingerprint_and_others_do_not() -> None:
    first = fingerprint_of(offer("Alice", "12345", "a8f3bc91d2"))
    copy = fingerprint_of(offer("Bob", "99812", "77ee01aa4f", "<b@x>"))
    other = fingerprint_of(SPAM[1].read_bytes())
    assert first is not None and copy is not None and other is not None
    memory = Fingerprints([(first, "spam")])
    assert memory.match(copy) == "spam"
    assert memory.match(other) is None
    assert fingerprint_of(b"Subject: thanks\r\n\r\nthanks, see you soon") is None


def test_a_rescue_outweighs_a_junking_of_the_same_message() -> None:
    fp = fingerprint_of(offer("Alice", "1", "r"))
    assert fp is not None
    memory = Fingerprints([(fp, "spam"), (fp ^ 1, "ham")])
    assert memory.match(fp ^ 2) == "ham"


def test_policy_order_allow_rescue_block_memory_sender_score() -> None:
    def verdict(**kw: object) -> str:
        args: dict[str, object] = {"mode": "move", **kw}
        return policy.decide(0.1, 0.9, "x@spam.example", **args).reason  # type: ignore[arg-type]

    assert verdict(allow=["spam.example"], remembered="ham") == "allow-list"
    assert verdict(remembered="ham", block=["spam.example"]) == "rescued-before"
    assert verdict(remembered="spam", block=["spam.example"]) == "block-list"
    assert verdict(remembered="spam") == "junked-before"
    assert verdict(sender_junked=True) == "junked-sender"
    assert verdict() == "score"


# -- versions and base data (files, no server) -----------------------------------------


def test_base_data_round_trips(tmp_path: Path) -> None:
    counts = sp.random(30, 5000, density=0.02, format="csr", random_state=1) * 40
    counts.data = np.ceil(counts.data)
    labels = np.arange(30) % 2
    model_lib.write_base(counts, labels, tmp_path / "b.base.npz")
    back, back_labels = model_lib.read_base(tmp_path / "b.base.npz")
    assert (back != counts).nnz == 0
    assert (back_labels == labels).all()


def store_with(tmp_path: Path, model: Path = SHIPPED_MODEL) -> ModelStore:
    """A state dir whose base is a copy of a model (the shipped one: a real held-out set)."""
    base = tmp_path / "base" / "model.joblib"
    base.parent.mkdir()
    for suffix in (".npz", ".json", ".base.npz"):
        shutil.copy(model.with_suffix(suffix), base.with_suffix(suffix))
    return ModelStore(tmp_path / "state", base)


def correction(
    raw: bytes, label: learning.Label, how: str = "rescued", account: str = "a"
) -> Correction:
    parsed = parse(raw)
    return Correction(
        account=account,
        label=label,
        how=how,
        folder="INBOX",
        message_id=parsed.message_id,
        content_hash=str(hash(raw)),
        fingerprint=fingerprint_of(raw),
        sender=parsed.sender.address,
        subject=parsed.subject,
        raw=raw,
    )


def test_retrain_promotes_a_candidate_that_learns_the_correction(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path)
    state = State(tmp_path / "state" / "state.sqlite3")
    ham_like_spam = SPAM[0].read_bytes().replace(b"Subject:", b"X-Rescued: yes\r\nSubject:", 1)
    state.add_correction(correction(ham_like_spam, "ham"))
    outcome = retrain.retrain(store, state)
    assert outcome.promoted, outcome.refused
    assert outcome.corrections == outcome.corrections_right == 1
    assert store.live_name() == outcome.version != BASE
    # Rollback without a name returns to the base; naming the version brings it back.
    assert store.rollback() == BASE and store.live_path() == store.base
    store.rollback(outcome.version)
    assert store.live_name() == outcome.version


def test_retrain_refuses_a_candidate_that_gets_corrections_wrong(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path)
    state = State(tmp_path / "state" / "state.sqlite3")
    raw = SPAM[2].read_bytes()
    # Same words, opposite labels: no model can get both right.
    state.add_correction(correction(raw, "ham"))
    state.add_correction(correction(raw.replace(b"Subject:", b"X-Copy: 1\r\nSubject:", 1), "spam"))
    outcome = retrain.retrain(store, state)
    assert not outcome.promoted
    assert "wrong" in outcome.refused
    assert store.live_name() == BASE
    refused = [v for v in store.versions() if v.name == outcome.version]
    assert refused and refused[0].refused == outcome.refused


def test_a_replaced_base_model_wins_over_versions_built_on_the_old_one(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path)
    state = State(tmp_path / "state" / "state.sqlite3")
    outcome = retrain.retrain(store, state)
    assert store.live_name() == outcome.version
    meta = json.loads(store.base.with_suffix(".json").read_text())
    meta["weights_sha256"] = "0" * 64  # as if the admin installed another model
    store.base.with_suffix(".json").write_text(json.dumps(meta))
    assert store.live_name() == BASE


# -- against Dovecot -------------------------------------------------------------------


def move(box: Box, source: str, target: str) -> None:
    box.client.select_folder(source)
    box.client.move(box.client.search("ALL"), target)
    box.client.unselect_folder()  # STATUS of a selected folder can lag on this connection


def test_rescued_mail_is_learned_never_moved_back_and_retrained_live(
    mailbox: Box, tmp_path: Path
) -> None:
    # An account without a personal layer (`calibrate: false`): the shared model learns.
    settings = mailbox.settings(calibrate=False)
    config = spamd_config(tmp_path, settings, learning={"retrain_delay": 0.2})
    with running_service(config) as (service, events):
        wait_until(lambda: synced(service), what="every watcher's first sync")
        mailbox.append(SPAM[0].read_bytes())
        junk_seen(mailbox, config)
        before = service.model().version
        move(mailbox, "Junk", "INBOX")  # the user: "this is not spam"
        wait_until(lambda: events.named("correction"))
        # A retrain is a child process training scikit-learn: one took 14-47 s here while
        # other test runs shared the 2 cores (60 s was once too little).
        wait_until(lambda: events.named("retrained"), timeout=300, what="the retrain")
        wait_until(lambda: service.model().version != before)
        # A near-identical copy stays in the inbox too.
        mailbox.append(SPAM[0].read_bytes().replace(b"Message-ID: <", b"Message-ID: <again-", 1))
        wait_until(lambda: len(events.named("message")) == 3)
    (label,) = {e["label"] for e in events.named("correction")}
    assert label == "ham"
    assert events.named("retrained")[0]["promoted"] is True
    reasons = [e["reason"] for e in events.named("message")]
    assert reasons[2] in ("rescued-before", "score")  # the retrained model may know it now
    assert mailbox.count("INBOX") == 2 and mailbox.count("Junk") == 0
    assert mailbox.total() == 2
    # The rescue was read with its fingerprint, so copies are known by content too.
    assert [label for _, label in State(state_path(config)).fingerprints(mailbox.user)] == ["ham"]


NEWSLETTER = (
    "Hello {name}, the gardening club meets again on Thursday evening in the community "
    "hall. We will talk about planting bulbs for spring, sharing seeds and tools, and "
    "the allotment rota for the coming months. Tea and biscuits as usual. Issue {number}."
)


def newsletter(name: str, number: str, message_id: str) -> bytes:
    body = NEWSLETTER.format(name=name, number=number)
    return (
        f"From: club@garden.example\r\nSubject: Club news\r\nMessage-ID: {message_id}\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def test_mail_the_user_junks_is_learned_and_its_copies_follow(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    raw = newsletter("Alice", "12", "<n1@garden.example>")
    with running_service(config) as (service, events):
        wait_until(lambda: synced(service), what="every watcher's first sync")
        mailbox.append(raw)
        wait_until(lambda: events.named("message"))
        assert mailbox.count("INBOX") == 1, "the model was expected to let this one through"
        move(mailbox, "INBOX", "Junk")  # the user: "this is spam"
        wait_until(lambda: events.named("correction"))
        mailbox.append(newsletter("Bob", "13", "<n2@garden.example>"))
        wait_until(lambda: mailbox.count("Junk") == 2)
    (correction_event,) = events.named("correction")
    assert correction_event["label"] == "spam"
    assert correction_event["how"] == "moved_to_junk"
    assert events.named("message")[-1]["reason"] == "junked-before"
    assert mailbox.total() == 2
    # Lines an admin can follow: the Message-ID finds the mail in a client; the Junk
    # watcher's lines name its folder.
    assert [e["message_id"] for e in events.named("message")] == [
        "<n1@garden.example>",
        "<n2@garden.example>",
    ]
    assert correction_event["message_id"] == "<n1@garden.example>"
    assert correction_event["folder"] == "Junk"
    junk_lines = [e for e in events if e.get("event") in {"junk_baseline", "arrived_in_junk"}]
    assert junk_lines and {e["folder"] for e in junk_lines} == {"Junk"}
    assert "" not in {e.get("folder") for e in events}


def junk_seen(box: Box, config: Config, count: int = 1) -> None:
    """Wait until the Junk watcher has recorded `count` messages as being in Junk."""
    validity = int(box.client.folder_status("Junk", [b"UIDVALIDITY"])[b"UIDVALIDITY"])
    state = State(state_path(config))
    wait_until(lambda: len(state.junk_items(box.user, validity)) == count, what="Junk read")
    state.close()


def two_spam_in_junk(box: Box, service: Service, events: Events) -> list[int]:
    """Deliver two spam once every watcher is ready; their UIDs in Junk (selected)."""
    wait_until(lambda: synced(service), what="every watcher's first sync")
    for path in SPAM[:2]:
        box.append(path.read_bytes())
    wait_until(lambda: len(events.named("arrived_in_junk")) == 2)
    box.client.select_folder("Junk")
    return list(box.client.search("ALL"))


def test_deleting_or_trashing_junk_teaches_nothing(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    with running_service(config) as (service, events):
        first, second = two_spam_in_junk(mailbox, service, events)
        client = mailbox.client
        client.move([first], "Trash")
        client.delete_messages([second])
        client.expunge()
        wait_until(lambda: len(events.named("left_junk")) == 2)
    assert events.named("correction") == []
    assert {e["to"] for e in events.named("left_junk")} == {None}


def test_not_junk_set_while_departures_are_located_is_learned(mailbox: Box, tmp_path: Path) -> None:
    # Locating mail that left Junk selects other folders; a keyword set in Junk
    # meanwhile is not told on selecting it again, so Junk is searched afterwards.
    pending = [True]

    class KeywordDuringLocate(Connection):
        def locate(self, message_id: str, skip: Collection[str]) -> tuple[str, int] | None:
            found = super().locate(message_id, skip)
            if pending:
                pending.clear()
                other = Box(mailbox.server, mailbox.user, mailbox.password, mailbox.tmp)
                with contextlib.closing(other):
                    other.client.select_folder("Junk")
                    other.client.add_flags(other.client.search("ALL"), ["$NotJunk"])
            return found

    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    with running_service(config, connect=KeywordDuringLocate.open) as (service, events):
        first, _ = two_spam_in_junk(mailbox, service, events)
        mailbox.client.delete_messages([first])
        mailbox.client.expunge()
        wait_until(lambda: not pending and events.named("correction"), timeout=10)
    (event,) = events.named("correction")
    assert (event["label"], event["how"]) == ("ham", "keyword")


def test_junk_keywords_set_by_a_client_are_labels(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    with running_service(config) as (service, events):
        wait_until(lambda: synced(service), what="every watcher's first sync")
        mailbox.append(HAM[0].read_bytes())
        mailbox.append(SPAM[0].read_bytes())
        wait_until(lambda: len(events.named("message")) == 2 and mailbox.count("Junk") == 1)
        client = mailbox.client
        client.select_folder("INBOX")
        client.add_flags(client.search("ALL"), ["Junk"])  # Thunderbird's "Junk" button
        client.select_folder("Junk")
        client.add_flags(client.search("ALL"), ["$NotJunk"])
        wait_until(lambda: len(events.named("correction")) == 2)
    labels = sorted((e["label"], e["how"]) for e in events.named("correction"))
    assert labels == [("ham", "keyword"), ("spam", "keyword")]
    rows = State(state_path(config)).corrections()
    assert sorted(c.label for c in rows) == ["ham", "spam"]
    assert all(c.subject for c in rows)


def test_cli_lists_models_and_corrections_and_rolls_back(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    state = State(tmp_path / "state" / "state.sqlite3")
    state.add_correction(correction(SPAM[0].read_bytes(), "ham"))
    version = retrain.retrain(store, state).version
    state.close()
    config = tmp_path / "spamd.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nmodel: {{path: {store.base}}}\n"
        "accounts: [{name: a, host: 127.0.0.1, password: x, username: a}]\n"
    )

    def spamd(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "spamd.cli", *args, "--config", str(config)],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )  # fmt: skip
        return done.stdout

    listed = spamd("model", "list")
    assert f"* {version}" in listed and "base" in listed
    (row,) = spamd("corrections").splitlines()
    assert "ham" in row and "rescued" in row and "INBOX" in row and "set aside" not in row
    ident = row.split()[0]
    # A rollback holds: what was learnt since the version is set aside, not relearnt.
    rolled = spamd("model", "rollback")
    assert "base" in rolled and "1 correction(s)" in rolled and "set aside" in rolled
    assert "[set aside]" in spamd("corrections")
    assert f"  {version}" in spamd("model", "list")  # listed, no longer live
    state = State(tmp_path / "state" / "state.sqlite3")
    assert retrain.retrain(store, state).corrections == 0
    state.close()
    assert "1 corrections, live now" in spamd("corrections", "restore")
    assert "[set aside]" not in spamd("corrections")
    assert "0 corrections" in spamd("corrections", "forget", ident)
    assert "no corrections yet" in spamd("corrections")
    with pytest.raises(subprocess.CalledProcessError) as error:
        spamd("corrections", "forget", ident)
    assert f"no correction with id {ident}" in error.value.stderr
    with pytest.raises(subprocess.CalledProcessError) as error:
        spamd("model", "rollback", "nosuchversion")
    assert "no model version" in error.value.stderr


def test_train_from_imap_takes_junk_as_spam_and_kept_mail_as_ham(
    mailbox: Box, tmp_path: Path
) -> None:
    store = store_with(tmp_path)
    mailbox.client.create_folder("Archive")
    for path in SPAM[:3]:
        mailbox.append(path.read_bytes(), "Junk")
    for path in HAM[:3]:
        mailbox.append(path.read_bytes(), "INBOX")
    for path in HAM[3:5]:
        mailbox.append(path.read_bytes(), "Archive")
    # Never taken as ham: what the user threw away, wrote, or has not sent yet.
    for folder, path in (("Trash", SPAM[3]), ("Sent", SPAM[4]), ("Drafts", SPAM[5])):
        mailbox.append(path.read_bytes(), folder)
    before = {str(name): mailbox.count(str(name)) for _, _, name in mailbox.client.list_folders()}
    config = tmp_path / "spamd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "model": {"path": str(store.base)},
                "accounts": [mailbox.settings()],
            }
        )
    )

    def train() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "spamd.cli", "train", "--from-imap",
             "--config", str(config), "--account", mailbox.user],
            capture_output=True, text=True, cwd=ROOT, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    out = train()
    assert "3 spam from Junk, 3 ham from INBOX, Archive; 6 new" in out
    assert "is live" in out
    state = State(tmp_path / "state" / "state.sqlite3")
    stored = state.corrections(mailbox.user)
    # Balanced, newest first and in turn from each folder: 2 from INBOX, 1 from Archive.
    assert sorted((c.label, c.folder) for c in stored) == [
        ("ham", "Archive"), ("ham", "INBOX"), ("ham", "INBOX"),
        ("spam", "Junk"), ("spam", "Junk"), ("spam", "Junk"),
    ]  # fmt: skip
    assert {c.how for c in stored} == {learning.BOOTSTRAP}
    assert state.fingerprints(mailbox.user) == []  # guesses are never remembered
    assert store.live_name() != BASE
    assert "0 new" in train()
    after = {str(name): mailbox.count(str(name)) for _, _, name in mailbox.client.list_folders()}
    assert after == before  # only examined: nothing moved


def test_train_from_imap_needs_an_account(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spamd.cli", "train", "--from-imap"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--from-imap needs --account" in done.stderr


def test_the_first_correction_applies_to_the_batch_being_read_meanwhile(
    mailbox: Box, tmp_path: Path
) -> None:
    config = spamd_config(tmp_path, mailbox.settings(scan_existing=True))
    account = config.accounts[0]
    state = State(state_path(config))
    memory = Memory(account.name, state, Events.logger())
    model = LiveModel(config.model_path, Events.logger())
    mailbox.append(newsletter("Bob", "13", "<n2@garden.example>"))
    junked = newsletter("Alice", "12", "<n1@garden.example>")
    asked: list[bool] = []

    def read_while_the_user_junks_a_copy(
        scorer: Scorer, raws: Sequence[bytes], max_bytes: int, fingerprint: bool
    ) -> Readings:
        asked.append(fingerprint)  # no corrections yet: the batch is read without
        readings = read_all(scorer, raws, max_bytes, fingerprint)
        memory.learn(correction(junked, "spam", "moved_to_junk", account=account.name))
        return readings

    inbox = FolderWatcher(
        account,
        "INBOX",
        connect=Connection.open,
        model=model,
        state=state,
        log=Events.logger(),
        stop=threading.Event(),
        read=read_while_the_user_junks_a_copy,
        memory=memory,
    )
    connection = Connection.open(account)
    try:
        inbox.sync(connection, connection.find_junk().name)
    finally:
        connection.logout()
    assert asked == [False]
    assert inbox.health.counts == {"move": 1}
    assert mailbox.count("Junk") == 1 and mailbox.total() == 1


def test_the_latest_label_of_a_message_wins_and_set_aside_ones_are_not_remembered(
    tmp_path: Path,
) -> None:
    state = State(tmp_path / "state.sqlite3")
    raw = offer("Alice", "1", "r")
    assert state.add_correction(correction(raw, "ham"))
    assert not state.add_correction(correction(raw, "ham"))
    assert state.add_correction(correction(raw, "spam", "moved_to_junk"))
    (only,) = state.corrections(with_raw=True)
    assert (only.label, only.how) == ("spam", "moved_to_junk")
    assert [label for _, label in state.fingerprints("a")] == ["spam"]
    assert state.labels("a", [only.content_hash]) == {only.content_hash: "spam"}
    assert state.set_aside(0.0) == 1
    assert state.fingerprints("a") == [] and state.corrections(learnt_only=True) == []
    assert state.labels("a", [only.content_hash]) == {}


def test_a_drag_back_into_junk_undoes_a_rescue(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.junk_watchers))
        mailbox.append(SPAM[0].read_bytes())
        junk_seen(mailbox, config)
        move(mailbox, "Junk", "INBOX")  # "not spam"
        wait_until(lambda: events.named("correction"))
        wait_until(lambda: mailbox.count("INBOX") == 1)
        move(mailbox, "INBOX", "Junk")  # "on second thoughts, spam"
        wait_until(lambda: len(events.named("correction")) == 2)
    labels = [(e["label"], e["how"]) for e in events.named("correction")]
    assert labels == [("ham", "rescued"), ("spam", "moved_to_junk")]
    (stored,) = State(state_path(config)).corrections()
    assert stored.label == "spam"
    assert mailbox.count("Junk") == 1 and mailbox.total() == 1


def test_a_redelivered_spam_is_not_a_rescue(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(
        tmp_path, mailbox.settings(), learning={"retrain_delay": 3600, "rescue_window": 1}
    )
    raw = SPAM[0].read_bytes()
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.junk_watchers))
        mailbox.append(raw)
        junk_seen(mailbox, config)
        mailbox.append(raw)  # byte for byte, while the first copy is still in Junk
        wait_until(lambda: events.named("redelivered"))
        junk_seen(mailbox, config, 2)
        mailbox.client.select_folder("Junk")  # the user empties Junk
        mailbox.client.delete_messages(mailbox.client.search("ALL"))
        mailbox.client.expunge()
        mailbox.client.unselect_folder()
        wait_until(lambda: len(events.named("left_junk")) == 2)
        mailbox.append(raw)  # and the spammer sends it once more
        wait_until(lambda: mailbox.count("Junk") == 1)
    assert events.named("correction") == []
    assert State(state_path(config)).corrections() == []
    assert events.named("message")[-1]["reason"] == "known-spam"
    assert mailbox.count("INBOX") == 0


def test_corrections_made_during_a_retrain_are_all_in_the_next_one(
    mailbox: Box, tmp_path: Path
) -> None:
    """The real scheduler and service; only the child process is replaced by a step
    that waits, so corrections certainly come while it runs."""
    running, release = threading.Event(), threading.Event()
    runs: list[int] = []

    class SlowRetrain(Service):
        def _retrain_once(self, observed: list[float] | None = None) -> None:
            runs.append(len(State(state_path(self.config)).corrections()))
            running.set()
            release.wait(30)

    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 0.05})
    service = SlowRetrain(config, log=Events.logger())
    service.scheduler.start()
    memory = Memory(mailbox.user, service.state, Events.logger(), on_learned=service._learned)
    try:
        memory.learn(correction(offer("A", "1", "a"), "spam", account=mailbox.user))
        wait_until(running.is_set)
        running.clear()
        for name in "BCD":  # while the first retrain runs
            memory.learn(correction(offer(name, "1", name), "spam", account=mailbox.user))
        # A retrain job scheduled meanwhile has fired (APScheduler skips it: one runs).
        wait_until(lambda: service.scheduler.get_job("retrain") is None)
        release.set()
        wait_until(lambda: len(runs) == 2, what="a second retrain")
    finally:
        service.scheduler.shutdown()
        service.state.close()
    assert runs == [1, 4]


def test_mail_leaving_junk_while_departures_are_located_is_noticed(
    mailbox: Box, tmp_path: Path
) -> None:
    # Locating one departure selects other folders; a second rescue made meanwhile
    # is not told on selecting Junk again, so the Junk watcher looks once more.
    config = spamd_config(tmp_path, mailbox.settings(), learning={"retrain_delay": 3600})
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.junk_watchers))
        for n, path in enumerate(SPAM[:3], start=1):
            mailbox.append(path.read_bytes())
            wait_until(lambda: len(events.named("arrived_in_junk")) >= n)  # noqa: B023 - waited for here
            move(mailbox, "Junk", "INBOX")
            wait_until(lambda: len(events.named("correction")) >= n)  # noqa: B023
    assert [e["label"] for e in events.named("correction")] == ["ham"] * 3
    assert mailbox.count("INBOX") == 3 and mailbox.count("Junk") == 0
