"""Hostile and broken mail, delivered through IMAP to a running spamd."""

from __future__ import annotations

import base64
import random
from pathlib import Path

from tests.conftest import HAM, SPAM, Box, running_service, spamd_config, wait_until
from tests.reliability.conftest import Report

MB = 1024 * 1024


def _mail(headers: str, body: bytes | str) -> bytes:
    body = body.encode() if isinstance(body, str) else body
    return headers.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def _nested(depth: int) -> bytes:
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    tail = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    return ("Subject: nested\r\nMIME-Version: 1.0\r\n" + head + "\r\ndeep\r\n" + tail).encode()


def hostile_messages() -> dict[str, bytes]:
    """Malformed messages of every kind the suite promises, by name."""
    big = base64.encodebytes(random.Random(0).randbytes(50 * MB))
    return {
        "truncated-mime": _mail(
            'Subject: cut\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="x"',
            "--x\r\nContent-Type: text/plain\r\n\r\nhalf a par",
        ),
        "bad-base64": _mail(
            "Subject: b64\nContent-Transfer-Encoding: base64", "!!!not base64@@@\r\n====\r\nQUJD"
        ),
        "bad-quoted-printable": _mail(
            "Subject: qp\nContent-Transfer-Encoding: quoted-printable", "=ZZ=\r\n=4=\r\n=\r\n=E9="
        ),
        "unknown-charset": _mail(
            'Subject: cs\nContent-Type: text/plain; charset="x-klingon"', "hi"
        ),
        "lying-charset": _mail(
            'Subject: lie\nContent-Type: text/plain; charset="us-ascii"',
            "caf\xe9 \xff\xfe \x80\x81".encode("latin-1"),
        ),
        "utf8-claims-broken": _mail(
            'Subject: u\nContent-Type: text/plain; charset="utf-8"', b"\xc3\x28 \xe2\x82 \xf0\x28"
        ),
        "nul-bytes": b"Subject: nul\x00here\r\nFrom: a\x00@b\r\n\r\nbody\x00with\x00nuls\r\n",
        "8bit-headers": "Subject: Grüße – 价格 \xa0\r\nFrom: Jörg <j@ö.example>\r\n\r\nx".encode(),
        "latin1-headers": "Subject: caf\xe9\r\n\r\nx".encode("latin-1"),
        "long-header-line": b"Subject: " + b"A" * (2 * MB) + b"\r\n\r\nbody",
        "many-headers": b"".join(b"X-H%d: v\r\n" % i for i in range(20000)) + b"\r\nbody",
        "nested-5000": _nested(5000),
        "many-parts": _mail(
            'Subject: parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="p"',
            "".join("--p\r\nContent-Type: text/plain\r\n\r\npart\r\n" for _ in range(20000))
            + "--p--",
        ),
        "attachment-50mb": _mail(
            'Subject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="a"',
            b"--a\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--a\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + big
            + b"\r\n--a--\r\n",
        ),
        "encoded-word-garbage": _mail("Subject: =?utf-8?B?!!!?= =?x-none?Q?=ZZ?= =?utf-8?Q?", "x"),
        "html-unclosed": _mail(
            "Subject: h\nContent-Type: text/html", "<div>" * 200000 + "<script>" + "x" * 1000
        ),
        "no-newline-5mb": b"Subject: line\r\n\r\n" + b"word " * MB,
        "headers-only": b"Subject: only headers\r\nFrom: x@y\r\n",
        "body-only": b"\r\njust a body, no header at all",
        "empty-boundary": _mail(
            'Subject: eb\nContent-Type: multipart/alternative; boundary=""', "--\r\nx\r\n----"
        ),
        "huge-boundary": _mail(
            f'Subject: hb\nContent-Type: multipart/mixed; boundary="{"b" * 10000}"', "x"
        ),
        "crlf-chaos": b"Subject: r\r\r\n\n\rFrom: \r\n\r\n\r\r\nbody\r",
    }


def mutations(count: int, seed: int) -> dict[str, bytes]:
    """Sample messages cut short, with bytes flipped or blocks shuffled."""
    rng = random.Random(seed)
    samples = [p.read_bytes() for p in SPAM + HAM]
    out = {}
    for i in range(count):
        raw = bytearray(rng.choice(samples))
        how = rng.choice(["truncate", "flip", "shuffle"])
        if how == "truncate":
            raw = raw[: rng.randrange(1, len(raw))]
        elif how == "flip":
            for _ in range(rng.randint(1, 50)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        else:
            blocks = [raw[j : j + 64] for j in range(0, len(raw), 64)]
            rng.shuffle(blocks)
            raw = bytearray(b"".join(blocks))
        out[f"mutation-{i}-{how}"] = bytes(raw)
    return out


def test_hostile_mail_is_handled_in_bounded_time_and_never_lost(
    mailbox: Box, tmp_path: Path, long_mode: bool, report: Report
) -> None:
    messages = {**hostile_messages(), **mutations(500 if long_mode else 40, seed=6)}
    config = spamd_config(tmp_path, mailbox.settings(timeout=120), learning={"enabled": False})
    with running_service(config) as (service, events):
        wait_until(lambda: all(w.health.last_sync for w in service.watchers))
        for raw in messages.values():
            mailbox.append(raw)
        # Dovecot refuses to store an empty message, so put one straight into the Maildir.
        mailbox.server.seed_maildir(mailbox.user, [b""])
        mailbox.client.select_folder("INBOX")  # makes Dovecot notice the new file
        mailbox.client.unselect_folder()
        total = len(messages) + 1
        wait_until(
            lambda: sum(w.health.handled for w in service.watchers) >= total,
            timeout=180,
            what=f"all {total} hostile messages handled",
        )
    handled = events.named("message")
    assert len(handled) == total
    assert not events.named("internal_error")
    assert not events.named("connection_failed")  # nothing broke the connection either
    unreadable = [e for e in handled if e["reason"] == "unreadable"]
    assert all(e["action"] == "keep" for e in unreadable)  # undecidable: left where it was
    slowest = max(float(e["ms"]) for e in handled)  # type: ignore[arg-type]
    assert slowest < 10_000, f"a message took {slowest:.0f} ms"
    assert mailbox.total() == total  # nothing lost, nothing duplicated
    report(
        "hostile_input",
        messages=total,
        crafted=len(hostile_messages()) + 1,
        mutated=total - len(hostile_messages()) - 1,
        unreadable=len(unreadable),
        junked=sum(e["action"] == "move" for e in handled),
        max_ms=round(slowest, 1),
    )
