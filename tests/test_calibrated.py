"""Per-account calibration in the daemon, against Dovecot: refused on too little mail
(and then cautious: the uncertain band is flagged, not moved), set from the account's
own kept mail and Junk, and kept across restarts."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from spamd.daemon.service import Service
from spamd.store.state import calibration_path
from tests.conftest import HAM, SAMPLES, SPAM, Box, running_service, spamd_config, wait_until

INVOICE = SAMPLES / "ham" / "04-invoice-question.eml"  # the shipped model's known miss: 0.978
SURE_SPAM = SPAM[0]  # 01-prize: 1.0


def ready(service: Service) -> bool:
    return all(w.health.last_sync > 0 for w in service.watchers)


def handled(service: Service) -> int:
    return sum(w.health.handled for w in service.watchers)


def test_too_little_mail_is_refused_and_the_account_flags_instead_of_moving(
    mailbox: Box, tmp_path: Path
) -> None:
    mailbox.append(HAM[0].read_bytes())
    mailbox.append(SPAM[1].read_bytes(), "Junk")
    config = spamd_config(tmp_path, mailbox.settings(calibrate=True))
    with running_service(config) as (service, events):
        wait_until(lambda: events.named("calibration_refused") and ready(service))
        (refused,) = events.named("calibration_refused")
        assert "too little mail to calibrate on: 1 kept and 1 junked" in str(refused["error"])
        health = service.health()[1]["accounts"][mailbox.user]["calibration"]
        assert health["cautious"] is True
        assert health["ham"] == 0
        threshold, move_at = health["threshold"], health["move_at"]
        assert threshold < 0.978 < move_at  # the invoice sits in the uncertain band
        metrics = generate_latest(service.telemetry.registry).decode()
        assert f'spamd_account_move_at{{account="{mailbox.user}"}} {move_at:.4f}' in metrics

        mailbox.append(INVOICE.read_bytes())
        mailbox.append(SURE_SPAM.read_bytes())
        wait_until(lambda: handled(service) == 2)
    assert mailbox.count("Junk") == 2  # the spam that was there, and the sure one
    mailbox.client.select_folder("INBOX")
    flags = mailbox.client.get_flags(mailbox.client.search("ALL"))
    assert sorted(b"$Junk" in f for f in flags.values()) == [False, True]  # invoice: flagged
    assert mailbox.count("INBOX") == 2
    actions = {e["reason"]: e["action"] for e in events.named("message")}
    assert actions == {"uncertain": "flag", "score": "move"}
    assert not calibration_path(config, mailbox.user).exists()


def test_enough_mail_sets_the_threshold_and_it_is_kept_across_restarts(
    mailbox: Box, tmp_path: Path, corpora: Path
) -> None:
    kept = sorted((corpora / "spamassassin_public" / "ham").glob("easy_ham.*.eml"))[:200]
    junked = sorted((corpora / "spamassassin_public" / "spam").glob("*.eml"))[:20]
    for path in kept:
        mailbox.append(path.read_bytes())
    for path in junked:
        mailbox.append(path.read_bytes(), "Junk")
    config = spamd_config(tmp_path, mailbox.settings(calibrate=True))
    with running_service(config) as (service, events):
        wait_until(lambda: events.named("calibrated"), timeout=60)
        (done,) = events.named("calibrated")
        assert (done["ham"], done["spam"], done["stored"]) == (200, 20, False)
        assert done["fpr_bound"] == round(1 / 201, 5)  # a small sample: stated, and cautious
        assert done["cautious"] is True
        calibrated = service.memories[mailbox.user].calibration
        assert calibrated is not None
        assert calibrated.ham == 200
    assert calibration_path(config, mailbox.user).exists()
    with running_service(config) as (service, events):
        wait_until(lambda: ready(service))
        (again,) = events.named("calibrated")
        assert again["stored"] is True
        assert again["threshold"] == done["threshold"]
        assert not events.named("calibration_refused")
