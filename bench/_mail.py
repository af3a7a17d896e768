"""Mail as another filter should see it in a fair comparison: without collection artefacts."""

from __future__ import annotations

import re

# The header fields a mail client shows or needs to render; everything else
# (Received chains, X-Keywords, X-Status, X-MailScanner, list and verdict
# headers) is how the corpus was collected, not what the sender wrote.
SHOWN_FIELDS = re.compile(
    rb"^(from|to|cc|reply-to|subject|date|message-id|mime-version|content-[a-z-]+):",
    re.I,
)


def without_artefacts(raw: bytes) -> bytes:
    """The message with only the header fields a mail client shows (see SHOWN_FIELDS)."""
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, sep, body = raw.partition(b"\r\n\r\n")
    kept: list[bytes] = []
    keep = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        keep = bool(SHOWN_FIELDS.match(line))
        if keep:
            kept.append(line)
    return b"".join(kept) + sep + body
