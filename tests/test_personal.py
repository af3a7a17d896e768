"""Per-account calibration and personal layers in the daemon (issue 18), against Dovecot:
on by default, refused (and said so) on too little mail, cautious until then, and one
account's corrections change its own scores only."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from spamd.core import personal
from spamd.core.personal import Layer, PersonalScorer
from spamd.core.scorer import load
from spamd.daemon.personal import AccountModel
from spamd.daemon.service import DRIFT_SECONDS, REFUSED_MESSAGES, Service
from spamd.errors import ModelError
from spamd.store.accounts import AccountFiles, write_private
from tests.conftest import (
    SAMPLES,
    SHIPPED_MODEL,
    SPAM,
    Box,
    Events,
    new_box,
    running_service,
    spamd_config,
    synced,
    wait_until,
)
from tests.sandbox import Dovecot

INVOICE = SAMPLES / "ham" / "04-invoice-question.eml"  # the shipped model's known miss: 0.978


def test_by_default_an_account_with_too_little_mail_is_refused_says_so_and_flags(
    mailbox: Box, tmp_path: Path
) -> None:
    mailbox.append(SPAM[1].read_bytes(), "Junk")
    config = spamd_config(tmp_path, mailbox.settings())  # no `calibrate`: the default
    with running_service(config) as (service, events):
        wait_until(lambda: events.named("calibration_refused") and synced(service))
        (said,) = events.named("calibration_refused")
        assert (said["kept"], said["junked"]) == (0, 1)
        assert "too little mail to calibrate on: 0 kept and 1 junked" in str(said["error"])
        health = service.health()[1]["accounts"][mailbox.user]
        assert str(health["personal"]["state"]).startswith("refused: too little mail")
        assert health["calibration"]["cautious"] is True
        wait_until(lambda: not service.personal[mailbox.user].busy)
        assert service.dead() == []  # a finished calibration is no dead watcher (the watchdog)

        mailbox.append(INVOICE.read_bytes())  # in the uncertain band: flagged, left in INBOX
        mailbox.append(SPAM[0].read_bytes())  # sure spam: moved
        wait_until(lambda: len(events.named("message")) == 2)
    actions = {e["reason"]: e["action"] for e in events.named("message")}
    assert actions == {"uncertain": "flag", "score": "move"}
    assert mailbox.count("INBOX") == 1 and mailbox.count("Junk") == 2
    mailbox.client.select_folder("INBOX")
    (flags,) = mailbox.client.get_flags(mailbox.client.search("ALL")).values()
    assert b"$Junk" in flags


def test_one_accounts_rescue_changes_its_own_scores_and_not_another_accounts(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(contextlib.closing(new_box(dovecot, "alice-p", tmp_path)))
        b = stack.enter_context(contextlib.closing(new_box(dovecot, "bob-p", tmp_path)))
        config = spamd_config(tmp_path, a.settings(), b.settings(), learning={"retrain_delay": 0.2})
        raw = SPAM[0].read_bytes()
        with running_service(config) as (service, events):
            wait_until(lambda: synced(service))
            for box in (a, b):
                box.append(raw)
            wait_until(lambda: a.count("Junk") == 1 and b.count("Junk") == 1)
            wait_until(lambda: len(events.named("message")) == 2)
            wait_until(lambda: len(events.named("arrived_in_junk")) == 2)  # seen: a rescue is told
            before = {e["account"]: float(e["score"]) for e in events.named("message")}  # type: ignore[arg-type]
            assert before[a.user] == before[b.user] > 0.99

            a.client.select_folder("Junk")
            a.client.move(a.client.search("ALL"), "INBOX")  # alice: "this is not spam"
            a.client.unselect_folder()
            wait_until(
                lambda: events.named("layer_fitted") or events.named("retrained"),
                timeout=300,
                what="what alice taught to go live",
            )

            for box in (a, b):  # a copy arrives at both
                box.append(raw.replace(b"Message-ID: <", b"Message-ID: <again-", 1))

            def copies() -> list[dict[str, object]]:
                return [e for e in events.named("message") if "<again-" in str(e["message_id"])]

            wait_until(lambda: len(copies()) == 2)
            after = {e["account"]: float(e["score"]) for e in copies()}  # type: ignore[arg-type]
            assert after[b.user] == before[b.user]  # bob's score: unchanged, to the digit
            assert after[a.user] < 0.5  # alice's: her layer knows it now
            (fitted,) = events.named("layer_fitted")
            assert fitted["account"] == a.user and fitted["corrections"] == 1
            scored = {u: service.personal[u]().score(raw) for u in (a.user, b.user)}
            assert scored[b.user] == service.model().score(raw)  # bob: the base alone
            assert scored[a.user] < 0.5
        assert not events.named("retrained")  # the shared model learnt nothing from alice
        assert b.count("Junk") == 2
        layer = AccountFiles(config.state_dir, a.user).layer
        assert stat.S_IMODE(layer.stat().st_mode) == 0o600
        assert not AccountFiles(config.state_dir, b.user).layer.exists()


def test_a_layer_and_a_sample_round_trip_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    layer = Layer(np.array([3, 70], np.int32), np.array([0.5, -1.25], np.float32), -0.25, 7)
    back, base = personal.from_bytes(personal.to_bytes(layer, "abc"), "here")
    assert base == "abc" and back.examples == 7 and back.bias == -0.25
    assert back.cols.tolist() == [3, 70] and back.offsets.tolist() == [0.5, -1.25]
    with pytest.raises(ModelError, match="here: not a personal layer"):
        personal.from_bytes(b"not an npz", "here")

    designs = [(np.array([1, 5]), np.array([0.6, 0.8]), 1.5), (np.array([2]), np.ones(1), -2.0)]
    got, labels, of = personal.designs_from_bytes(
        personal.designs_to_bytes(designs, [0, 1], "v1"), "s"
    )
    assert of == "v1" and labels.tolist() == [0, 1]
    assert [(d[0].tolist(), d[2]) for d in got] == [([1, 5], 1.5), ([2], -2.0)]

    path = tmp_path / "layers" / "x.npz"
    old = os.umask(0)
    try:
        write_private(path, b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_empty_layer_scores_as_the_base_and_a_layer_moves_only_its_columns() -> None:
    base = load(SHIPPED_MODEL)
    raw = INVOICE.read_bytes()
    assert PersonalScorer(base, personal.EMPTY).score(raw) == pytest.approx(base.score(raw))
    cols, _, _ = base.design(base.features(raw))
    shifted = Layer(cols[:1].astype(np.int32), np.array([-3.0], np.float32), 0.0, 1)
    own = PersonalScorer(base, shifted)
    assert own.score(raw) < base.score(raw)
    assert own.version.startswith(base.version + "+")
    other = SPAM[0].read_bytes()
    if cols[0] not in base.design(base.features(other))[0]:
        assert own.score(other) == pytest.approx(base.score(other))


def test_an_account_calibrates_again_when_its_mail_or_the_base_model_drifts(
    tmp_path: Path,
) -> None:
    settings: dict[str, object] = {
        "name": "x",
        "host": "127.0.0.1",
        "username": "x",
        "password": "p",
    }
    config = spamd_config(tmp_path, settings)
    service = Service(config, log=Events.logger())
    try:
        (account,) = config.accounts
        own = AccountModel(AccountFiles(config.state_dir, "x"), service.model, Events.logger())
        service.personal["x"] = own
        own.state = "refused: too little mail"
        own.attempted(0)
        assert service.drifted(account) == ""
        own.handled_at_attempt = -REFUSED_MESSAGES  # as many new messages since
        assert (
            service.drifted(account)
            == f"{REFUSED_MESSAGES} new messages since the last calibration"
        )
        own.state = "calibrated"  # a calibrated account waits for more
        assert service.drifted(account) == ""
        own.last_attempt -= DRIFT_SECONDS
        assert service.drifted(account) == "time since the last calibration"
        own.attempted(0)
        own.layer, own.layer_base = (
            Layer(np.array([1], np.int32), np.ones(1, np.float32), 0.0, 9),
            "old",
        )
        assert service.drifted(account) == "the live base model changed"
        assert own() is service.model()  # until then: the base alone
    finally:
        service.state.close()
