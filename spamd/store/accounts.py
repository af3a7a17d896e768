"""Each account's own files in the state directory: its calibration, its personal
layer and the sample of its mail they were fitted on.

    STATE_DIR/calibration/<digest>.json   the threshold (`core.calibration`)
    STATE_DIR/layers/<digest>.npz         the personal layer (`core.personal`)
    STATE_DIR/samples/<digest>.npz        the calibration sample as the model saw it

`<digest>` is the first 16 hex digits of SHA-256 of the account's name (a name
may hold characters a file name cannot). Files are written whole (a temporary
file renamed over the old one) and readable by spamd's user only (0600, in
0700 directories): a sample holds no message text, but it says what someone
keeps and junks.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class AccountFiles:
    state_dir: Path
    account: str

    @property
    def _digest(self) -> str:
        return hashlib.sha256(self.account.encode()).hexdigest()[:16]

    @property
    def calibration(self) -> Path:
        return self.state_dir / "calibration" / f"{self._digest}.json"

    @property
    def layer(self) -> Path:
        return self.state_dir / "layers" / f"{self._digest}.npz"

    @property
    def sample(self) -> Path:
        return self.state_dir / "samples" / f"{self._digest}.npz"


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` at once, readable by this user only."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
