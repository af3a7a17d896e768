"""The daemon against a real Dovecot: where mail lands, restarts, faults, many accounts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml

from spamd.daemon import watcher
from spamd.daemon.service import Service, scan
from spamd.demo import sandbox as shipped
from spamd.errors import TransientMailboxError
from spamd.mail.imap import Connection
from spamd.ops.config import Account, Config
from spamd.store.state import State, state_path
from tests import sandbox
from tests.conftest import (
    HAM,
    ROOT,
    SHIPPED_MODEL,
    SPAM,
    Box,
    Events,
    inbox_watcher,
    message,
    running_service,
    spamd_config,
    wait_until,
)

SPAM_SUBJECTS = sorted(
    line.split(":", 1)[1].strip()
    for p in SPAM
    for line in p.read_text().splitlines()
    if line.startswith("Subject:")
)


def deliver(box: Box, paths: Sequence[Path], folder: str = "INBOX") -> None:
    for path in paths:
        box.append(path.read_bytes(), folder)


def handled(service: Service) -> int:
    return sum(w.health.handled for w in service.watchers)


def ready(service: Service) -> bool:
    return all(w.health.last_sync > 0 for w in service.watchers)


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "polling"])
def test_spam_lands_in_junk_and_ham_stays(mailbox: Box, tmp_path: Path, idle: bool) -> None:
    # The model's own verdicts: a new, empty account that calibrates (the default) is
    # cautious and flags the less certain spam instead (tests/test_personal.py).
    settings = mailbox.settings(idle=idle, poll_interval=1, calibrate=False)
    config = spamd_config(tmp_path, settings)
    with running_service(config) as (service, events):
        wait_until(lambda: ready(service), what="first sync")
        assert service.watchers[0].health.idle is idle
        deliver(mailbox, HAM + SPAM)
        wait_until(lambda: handled(service) == len(HAM + SPAM), what="all mail handled")
    assert mailbox.subjects("Junk") == SPAM_SUBJECTS
    assert mailbox.count("INBOX") == len(HAM)
    assert mailbox.total() == len(HAM + SPAM)
    lines = events.named("message")
    assert len(lines) == len(HAM + SPAM)
    assert {"account", "folder", "uid", "score", "action", "ms"} <= lines[0].keys()


def test_without_move_copies_then_expunges_only_those_uids(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(sandbox.running({"u": "p"}, hide=("MOVE",)))
        box = stack.enter_context(contextlib.closing(Box(server, "u", "p", tmp_path)))
        # The user's own message marked \Deleted must survive spamd's expunge.
        box.append(
            message("keep me", "the user deleted this but did not expunge"), flags=["\\Deleted"]
        )
        config = spamd_config(tmp_path, box.settings())
        with running_service(config) as (service, _):
            wait_until(lambda: ready(service))
            deliver(box, SPAM[:3] + HAM[:2])
            wait_until(lambda: handled(service) == 5)
        assert box.count("Junk") == 3
        assert box.count("INBOX") == 3  # 2 ham + the user's \Deleted message
        assert box.total() == 6


def test_server_restart_is_survived(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(sandbox.running({"u": "p"}))
        box = stack.enter_context(contextlib.closing(Box(server, "u", "p", tmp_path)))
        config = spamd_config(tmp_path, box.settings())
        with running_service(config) as (service, events):
            wait_until(lambda: ready(service))
            deliver(box, SPAM[:2])
            wait_until(lambda: handled(service) == 2)
            server.restart()
            box.reconnect()
            deliver(box, SPAM[2:4] + HAM[:1])
            wait_until(lambda: handled(service) == 5, timeout=30)
            assert events.named("connection_failed") or len(events.named("connected")) >= 2
        assert box.count("Junk") == 4
        assert box.total() == 5


def test_a_stopped_sandbox_has_no_process_left_alive() -> None:
    # A Dovecot child still dying holds its sockets, and a restart at once would
    # stop with "Dovecot is already running?".
    with sandbox.running({"u": "p"}) as server:
        assert server.process is not None
        group = server.process.pid
        assert shipped._alive_in_group(group)
        server.stop()
        assert not shipped._alive_in_group(group)
    dead = subprocess.Popen(["sleep", "60"], start_new_session=True)
    dead.kill()
    os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    assert not shipped._alive_in_group(dead.pid), "a zombie counts as dead"
    dead.wait()


def test_daemon_restart_reprocesses_nothing(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings())
    with running_service(config) as (service, _):
        wait_until(lambda: ready(service))
        deliver(mailbox, HAM[:2] + SPAM[:2])
        wait_until(lambda: handled(service) == 4)
    deliver(mailbox, HAM[2:3] + SPAM[2:3])  # arrives while spamd is down
    with running_service(config) as (service, events):
        wait_until(lambda: handled(service) == 2, what="the two new messages")
        time.sleep(0.5)
        assert handled(service) == 2
    assert sorted(e["uid"] for e in events.named("message")) == [5, 6]  # type: ignore[type-var]
    state = State(state_path(config))
    assert len(state.decisions()) == 6
    assert mailbox.count("Junk") == 3
    assert mailbox.total() == 6


def test_uidvalidity_change_is_detected_and_nothing_decided_twice(
    mailbox: Box, tmp_path: Path
) -> None:
    mailbox.client.create_folder("Feed")
    config = spamd_config(tmp_path, mailbox.settings(folders=["Feed"]))
    with running_service(config) as (service, _):
        wait_until(lambda: ready(service))
        deliver(mailbox, HAM[:2], "Feed")
        wait_until(lambda: handled(service) == 2)
    # The folder is recreated (new UIDVALIDITY) with the same two messages and one new spam.
    mailbox.client.delete_folder("Feed")
    mailbox.client.create_folder("Feed")
    deliver(mailbox, [*HAM[:2], SPAM[0]], "Feed")
    with running_service(config) as (service, events):
        wait_until(lambda: handled(service) == 1, what="only the new message")
        time.sleep(0.5)
        assert handled(service) == 1
    assert events.named("uidvalidity_changed")
    assert mailbox.count("Junk") == 1
    assert mailbox.count("Feed") == 2


def test_wrong_password_for_one_account_leaves_the_other_working(
    mailbox: Box, tmp_path: Path, dovecot: sandbox.Dovecot
) -> None:
    bad = mailbox.settings(name="broken", password="wrong")
    config = spamd_config(tmp_path, bad, mailbox.settings(name="good"))
    with running_service(config) as (service, events):
        broken, good = service.watchers
        wait_until(lambda: good.health.last_sync > 0 and broken.health.failures >= 1)
        deliver(mailbox, SPAM[:2] + HAM[:1])
        wait_until(lambda: good.health.handled == 3)
        assert broken.health.handled == 0
        assert "login refused" in broken.health.last_error
        assert "wrong" not in broken.health.last_error  # never the password
    failures = events.named("connection_failed")
    assert failures and all(e["account"] == "broken" for e in failures)
    assert failures[0]["error"] == (  # what the server said, as text, and what to do
        "login refused: [AUTHENTICATIONFAILED] Authentication failed.; "
        "check the account's username and password (or token)"
    )
    assert mailbox.count("Junk") == 2


def test_a_failing_password_command_is_one_error_line_per_attempt_not_a_traceback(
    mailbox: Box, tmp_path: Path
) -> None:
    account = mailbox.settings(password=None, password_command="echo oops >&2; exit 3")
    config = spamd_config(tmp_path, account)
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.failures for w in service.watchers))
    assert events.named("internal_error") == []
    failure = events.named("connection_failed")[0]
    assert (failure["level"], failure["kind"]) == ("error", "ConfigError")
    assert failure["error"] == (
        f"{tmp_path / 'spamd.yaml'}:accounts[0].password_command: command exited with "
        "status 3; run it as the user spamd runs as to see why"
    )
    assert "exc_info" not in failure


def test_first_run_leaves_existing_mail_alone_unless_asked(mailbox: Box, tmp_path: Path) -> None:
    deliver(mailbox, SPAM[:2])
    config = spamd_config(tmp_path / "a", mailbox.settings())
    with running_service(config) as (service, _):
        wait_until(lambda: ready(service))
        time.sleep(0.3)
        assert handled(service) == 0
    assert mailbox.count("INBOX") == 2
    config = spamd_config(tmp_path / "b", mailbox.settings(scan_existing=True))
    with running_service(config) as (service, _):
        wait_until(lambda: handled(service) == 2)
    assert mailbox.count("Junk") == 2


def scan_inbox(
    config: Config,
    progress: Callable[[int], None],
    workers: int = 1,
    connect: Callable[[Account], Connection] = Connection.open,
) -> dict[str, int]:
    return scan(
        config,
        config.accounts[0],
        ["INBOX"],
        since_days=None,
        log=Events.logger(),
        progress=progress,
        total=lambda n: None,
        connect=connect,
        workers=workers,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_scan_classifies_a_backlog_and_moves_spam_in_groups(
    mailbox: Box, tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher, "BATCH", 5)  # several batches, each read while one is decided
    monkeypatch.setattr(watcher, "ACT_EVERY", len(SPAM))
    moves: list[int] = []

    class CountingMoves(Connection):
        def move(self, uids: Sequence[int], folder: str) -> None:
            moves.append(len(uids))
            super().move(uids, folder)

    deliver(mailbox, HAM + SPAM)
    config = spamd_config(tmp_path, mailbox.settings())
    seen: list[int] = []
    counts = scan_inbox(config, progress=seen.append, workers=workers, connect=CountingMoves.open)
    assert counts == {"keep": len(HAM), "move": len(SPAM)}
    assert sum(seen) == len(HAM + SPAM)
    assert mailbox.count("Junk") == len(SPAM)
    # The spam of two batches went in one MOVE: each MOVE costs the server a folder scan.
    assert moves == [len(SPAM)]
    # A second scan finds everything decided already.
    again = scan_inbox(config, progress=lambda n: None)
    assert again == {}


def test_allow_and_block_lists_override_the_model(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(
        tmp_path,
        mailbox.settings(allow=["winner-notify.example"], block=["alice@example.org"]),
    )
    spam_sender = [p for p in SPAM if b"winner-notify.example" in p.read_bytes()]
    assert spam_sender, "the prize sample's sender domain changed"
    with running_service(config) as (service, events):
        wait_until(lambda: ready(service))
        deliver(mailbox, spam_sender)
        mailbox.append(message("lunch?", "see you at noon", sender="Alice <alice@example.org>"))
        wait_until(lambda: handled(service) == 2)
    reasons = sorted(str(e["reason"]) for e in events.named("message"))
    assert reasons == ["allow-list", "block-list"]
    assert mailbox.subjects("Junk") == ["lunch?"]


def test_flag_mode_sets_junk_keyword_and_moves_nothing(mailbox: Box, tmp_path: Path) -> None:
    config = spamd_config(tmp_path, mailbox.settings(mode="flag"))
    with running_service(config) as (service, _):
        wait_until(lambda: ready(service))
        deliver(mailbox, SPAM[:1] + HAM[:1])
        wait_until(lambda: handled(service) == 2)
    mailbox.client.select_folder("INBOX")
    flags = mailbox.client.get_flags(mailbox.client.search("ALL"))
    assert sorted(b"$Junk" in f for f in flags.values()) == [False, True]
    assert mailbox.count("Junk") == 0


class CrashBeforeMove(Connection):
    """A real connection that drops just before MOVE, as a crash or a cut cable would."""

    def move(self, uids: Sequence[int], folder: str) -> None:
        self.close()
        raise TransientMailboxError("injected: connection cut before MOVE")


def test_a_move_cut_short_is_finished_after_restart_exactly_once(
    mailbox: Box, tmp_path: Path
) -> None:
    config = spamd_config(tmp_path, mailbox.settings(scan_existing=True))
    deliver(mailbox, SPAM[:2] + HAM[:1])
    state = State(state_path(config))
    watcher = inbox_watcher(config, state, CrashBeforeMove.open)
    broken = CrashBeforeMove.open(config.accounts[0])
    with pytest.raises(TransientMailboxError):
        watcher.sync(broken, broken.find_junk().name)
    assert len(state.unfinished(mailbox.user, "INBOX", _uidvalidity(mailbox))) == 2
    with running_service(config) as (service, events):
        wait_until(lambda: mailbox.count("Junk") == 2, what="the interrupted moves")
        wait_until(lambda: ready(service))
    assert not events.named("message")  # nothing classified again
    assert state.unfinished(mailbox.user, "INBOX", _uidvalidity(mailbox)) == []
    assert mailbox.count("INBOX") == 1
    assert mailbox.total() == 3


def test_a_scan_cut_short_is_finished_by_the_next_scan(mailbox: Box, tmp_path: Path) -> None:
    deliver(mailbox, SPAM[:2] + HAM[:1])
    config = spamd_config(tmp_path, mailbox.settings())
    with pytest.raises(TransientMailboxError):
        scan_inbox(config, progress=lambda n: None, connect=CrashBeforeMove.open)
    assert mailbox.count("Junk") == 0
    assert scan_inbox(config, progress=lambda n: None) == {}  # nothing classified again
    assert mailbox.count("Junk") == 2
    assert mailbox.count("INBOX") == 1
    assert mailbox.total() == 3


class CutAfterCopy(Connection):
    """A real connection that drops once the server has carried out a COPY, before
    spamd hears back: whether the copy exists is then unknown."""

    def copy(self, uids: Sequence[int], folder: str) -> None:
        super().copy(uids, folder)
        self.close()
        raise TransientMailboxError("injected: connection cut after COPY")


def test_a_copy_cut_short_is_never_copied_twice_with_or_without_a_message_id(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(sandbox.running({"u": "p"}, hide=("MOVE",)))
        box = stack.enter_context(contextlib.closing(Box(server, "u", "p", tmp_path)))
        box.append(SPAM[0].read_bytes())
        anonymous = re.sub(rb"(?im)^message-id:.*\n", b"", SPAM[1].read_bytes(), count=1)
        assert b"message-id" not in anonymous.lower()
        box.append(anonymous)
        config = spamd_config(tmp_path, box.settings())
        with pytest.raises(TransientMailboxError):
            scan_inbox(config, progress=lambda n: None, connect=CutAfterCopy.open)
        assert (box.count("INBOX"), box.count("Junk")) == (2, 2)  # copied, not expunged
        assert scan_inbox(config, progress=lambda n: None) == {}  # nothing classified again
        assert (box.count("INBOX"), box.count("Junk")) == (0, 2)


def _uidvalidity(box: Box) -> int:
    status = box.client.folder_status("INBOX", [b"UIDVALIDITY"])
    return int(status[b"UIDVALIDITY"])


def test_run_stops_on_sigterm_within_five_seconds_and_reloads_on_sighup(
    mailbox: Box, tmp_path: Path
) -> None:
    config_file = tmp_path / "spamd.yaml"
    settings = {
        "state_dir": str(tmp_path / "state"),
        "model": {"path": str(SHIPPED_MODEL)},
        "accounts": [mailbox.settings()],
    }
    config_file.write_text(yaml.safe_dump(settings))
    with subprocess.Popen(
        [sys.executable, "-m", "spamd.cli", "run", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None
        try:
            lines = _read_until(proc, "connected")
            assert all(json.loads(line)["event"] for line in lines)  # JSON off a terminal
            proc.send_signal(signal.SIGHUP)
            _read_until(proc, "connected")  # reconnected with the reloaded configuration
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            took = time.monotonic() - started
            rest = proc.stdout.read().decode()
        finally:
            proc.kill()
    assert code == 0
    assert took < 5.0
    assert '"stopped_all"' in rest


def _read_until(proc: subprocess.Popen[bytes], event: str, timeout: float = 15.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        lines.append(line)
        if json.loads(line).get("event") == event:
            return lines
    raise AssertionError(f"no {event!r} event in: {lines}")


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_tls_is_verified_and_trusts_only_the_configured_ca(
    mailbox: Box, tmp_path: Path, dovecot: sandbox.Dovecot, tls: str
) -> None:
    port = dovecot.imaps_port if tls == "ssl" else dovecot.imap_port
    trusted = spamd_config(
        tmp_path, mailbox.settings(tls=tls, port=port, ca_file=str(dovecot.cert))
    ).accounts[0]
    connection = Connection.open(trusted)
    assert connection.find_junk().name == "Junk"
    connection.logout()
    untrusted = spamd_config(tmp_path, mailbox.settings(tls=tls, port=port)).accounts[0]
    with pytest.raises(TransientMailboxError, match=r"certificate not trusted.*ca_file"):
        Connection.open(untrusted)


def test_the_imap_library_never_traces_bodies_or_passwords(
    mailbox: Box, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # imapclient routes imaplib's protocol trace to the "imapclient.imaplib" logger;
    # with that logger enabled, the trace would carry the LOGIN line and every body.
    marker = "zebra-violin-4417"
    mailbox.append(message("A private letter", f"The secret word is {marker}."))
    account = spamd_config(tmp_path, mailbox.settings()).accounts[0]
    with caplog.at_level("DEBUG", logger="imapclient"):
        connection = Connection.open(account)
        try:
            connection.select("INBOX")
            (fetched,) = connection.fetch(connection.uids_after(0), 4096)
        finally:
            connection.logout()
    assert marker.encode() in fetched.raw
    assert caplog.records, "the imapclient loggers were not captured at all"
    traced = "\n".join(r.getMessage() for r in caplog.records)
    assert marker not in traced
    assert mailbox.password not in traced


def test_keywords_another_client_sets_are_news_even_after_a_fetch(
    mailbox: Box, tmp_path: Path
) -> None:
    # A FETCH reply also carries the server's notice of another client's keyword
    # change; the notice must outlive it, or a sync would swallow it unseen.
    for path in HAM[:2]:
        mailbox.append(path.read_bytes())
    connection = Connection.open(spamd_config(tmp_path, mailbox.settings()).accounts[0])
    try:
        connection.select("INBOX")
        first, second = connection.uids_after(0)
        connection.add_keywords([first], ["$NotJunk"])  # our own change is not news
        connection.fetch([first], 4096)
        assert not connection.reported(("FETCH",))
        mailbox.client.select_folder("INBOX")
        mailbox.client.add_flags([second], ["Junk"])  # another client's is
        connection.fetch([first], 4096)
        assert connection.reported(("FETCH",))
        assert not connection.reported(("EXISTS", "EXPUNGE"))
        connection.select("INBOX")
        assert not connection.reported(("FETCH",))
    finally:
        connection.logout()


def test_mail_arriving_during_a_sync_is_handled_without_waiting_for_news(
    mailbox: Box, tmp_path: Path
) -> None:
    # The server tells of new mail once, in the reply to whatever command comes next.
    # Mail that arrives just after the watcher looked for new UIDs is told of during
    # the sync, and IDLE will not tell of it again.
    late = [SPAM[0].read_bytes()]

    class ArrivalDuringSync(Connection):
        def uids_after(self, last_uid: int) -> list[int]:
            found = super().uids_after(last_uid)
            if self.selected == "INBOX" and late:
                other = Box(mailbox.server, mailbox.user, mailbox.password, mailbox.tmp)
                with contextlib.closing(other):
                    other.append(late.pop())
            return found

    config = spamd_config(tmp_path, mailbox.settings())
    with running_service(config, connect=ArrivalDuringSync.open) as (service, _):
        wait_until(lambda: ready(service) and not late)
        wait_until(lambda: mailbox.count("Junk") == 1, timeout=5, what="the spam to be moved")
    assert mailbox.total() == 1


@pytest.mark.parametrize("tls", ["none", "ssl"])
def test_idle_sees_mail_that_arrived_just_before_it_began(
    mailbox: Box, tmp_path: Path, dovecot: sandbox.Dovecot, tls: str
) -> None:
    # Dovecot tells of mail that came after the last command right after "+ idling",
    # in the same read: it waited unseen in the client's buffer, and the folder IDLEd
    # past it (under load: test_mail_the_user_junks_is_learned_and_its_copies_follow).
    port = dovecot.imaps_port if tls == "ssl" else dovecot.imap_port
    settings = mailbox.settings(tls=tls, port=port, ca_file=str(dovecot.cert))
    connection = Connection.open(spamd_config(tmp_path, settings).accounts[0])
    try:
        connection.select("INBOX")
        assert connection.idle_wait(0.5).changed is False  # nothing new: no false alarm
        connection.noop()
        connection.select("INBOX")
        mailbox.append(message("Between two commands", "It came before IDLE did."))
        wait_until(lambda: mailbox.count("INBOX") == 1)
        assert connection.idle_wait(10).changed is True
        connection.noop()
        assert connection.reported(["EXISTS"])
        assert connection.uids_after(0) == [1]
    finally:
        connection.logout()
