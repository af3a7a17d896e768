"""One account's model in the daemon: the live shared base plus the account's
personal layer (`core.personal`), and what the account's calibration is doing.

An `AccountModel` is what that account's watchers are given as their model (a
callable returning a `Scorer`): the base alone while the account has no layer,
or a layer fitted on another base; else the base with the layer. It holds only
the layer (at most `personal.MAX_OFFSETS` offsets: 64 KB) and reads it from the
state directory (`store.accounts`) when the layer process has written a new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from spamd.core import personal
from spamd.core.personal import Layer, PersonalScorer
from spamd.core.scorer import Scorer
from spamd.errors import SpamdError
from spamd.store.accounts import AccountFiles


class AccountModel:
    """The scorer of one account's mail, and the bookkeeping of its calibration and refits."""

    def __init__(self, files: AccountFiles, live: Callable[[], Scorer], log: Any) -> None:
        self.files = files
        self._live = live
        self._log = log.bind(account=files.account)
        self.layer: Layer = personal.EMPTY
        self.layer_base = ""  # the version of the base the layer was fitted on
        self._cache: tuple[Scorer, Layer, Scorer] | None = None
        # Calibration and refits run one at a time per account (behind the lock).
        self.lock = threading.Lock()
        self.busy = False
        self.calibrate_wanted = False
        self.unlearnt: list[float] = []  # when each correction not in a fit yet was observed
        # Progress, for /healthz and drift (see `service.Service.drifted`).
        self.state = "not calibrated"  # calibrating | calibrated | refused: REASON | failed: ...
        self.last_attempt = 0.0  # time.time() of the last calibration attempt
        self.handled_at_attempt = 0  # messages handled by the account's watchers then

    def __call__(self) -> Scorer:
        base = self._live()
        layer = self.layer
        if not layer.examples or self.layer_base != base.version:
            return base
        cached = self._cache
        if cached is not None and cached[0] is base and cached[1] is layer:
            return cached[2]
        scorer = PersonalScorer(base, layer)
        self._cache = (base, layer, scorer)
        return scorer

    @property
    def current(self) -> bool:
        """Whether the layer was fitted on the live base (else the base scores alone)."""
        return bool(self.layer.examples) and self.layer_base == self._live().version

    def load(self) -> bool:
        """Read the account's stored layer; False (and the layer kept) if there is none
        or it cannot be read."""
        path = self.files.layer
        try:
            layer, base = personal.from_bytes(path.read_bytes(), str(path))
        except FileNotFoundError:
            return False
        except (OSError, SpamdError) as exc:
            self._log.warning("layer_unreadable", error=str(exc)[:300])
            return False
        self.layer, self.layer_base = layer, base
        return True

    def fields(self) -> dict[str, Any]:
        """The layer and the calibration's progress, for /healthz and log lines."""
        return {
            "state": self.state,
            "layer_examples": self.layer.examples,
            "layer_offsets": int(self.layer.cols.size),
            "layer_bytes": self.layer.nbytes,
            "layer_current": self.current,
            "last_attempt": round(self.last_attempt, 1) or None,
        }

    def attempted(self, handled: int) -> None:
        self.last_attempt = time.time()
        self.handled_at_attempt = handled
