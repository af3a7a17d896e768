"""Fitting one account's personal layer, with a guard before it goes live.

Runs in its own process (``python -I -m spamd.training.layers``, started by the
daemon when an account calibrates and after each of its corrections), so the
daemon never imports the optimiser. Steps, for one account only:

1. its calibration sample (`store.accounts`: what the live model saw of its
   newest kept mail and Junk, read by the daemon) and its own corrections
   (`state.corrections`; a user's correction weighs `personal.CORRECTION_WEIGHT`
   sample labels, a label guessed by `spamd train --from-imap` one);
2. with ``--calibrate``: the account's threshold from out-of-fold layer scores
   of the sample (`personal.cross_scores`, `calibration.calibrate`); otherwise
   the stored threshold (or the model's, cautiously, if the account has none);
3. the candidate layer is fitted on sample and corrections (`personal.fit`);
4. the guard refuses it if a replay of the account's own corrections finds one
   it gets wrong at the account's threshold, or if it would junk more of the
   account's kept mail (the sample's ham) than the false-positive budget
   allows; else it is written (0600) and the daemon loads it.

No other account's mail, corrections or layer is read or written. Prints one
JSON line with the outcome.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spamd.core import calibration, personal
from spamd.core import scorer as scorer_lib
from spamd.core.calibration import Calibration
from spamd.core.features import extract
from spamd.core.learning import BOOTSTRAP, Correction
from spamd.core.message import parse
from spamd.errors import ModelError, SpamdError
from spamd.store.accounts import AccountFiles, write_private
from spamd.store.state import FILE_NAME, MAX_EXAMPLES, State
from spamd.store.versions import ModelStore


def fit_account(
    store: ModelStore, state: State, files: AccountFiles, *, recalibrate: bool = False
) -> dict[str, Any]:
    """Fit, guard and (if it passes) store one account's layer; returns the outcome."""
    started = time.monotonic()
    account = files.account
    base = scorer_lib.load(store.live_path())
    designs, labels = _sample(files, base.version)
    budget = base.metadata.fp_budget
    if recalibrate:
        cross = personal.cross_scores(designs, labels)
        cal = calibration.calibrate(cross[labels == 0], cross[labels == 1], budget)
    else:
        cal = _stored_calibration(files, base.threshold)
    given, guessed = _corrections(state, account)
    fixes = [*given, *guessed]
    fix_designs = [base.design(extract(parse(c.raw, base.metadata.max_bytes), base.channels))
                   for c in fixes]  # fmt: skip
    fix_labels = [int(c.label == "spam") for c in fixes]
    weights = (
        [1.0] * len(designs) + [personal.CORRECTION_WEIGHT] * len(given) + [1.0] * len(guessed)
    )
    start = _stored_layer(files, base.version)
    layer = personal.fit(
        [*designs, *fix_designs], [*labels.tolist(), *fix_labels], weights, start=start
    )

    replay = [layer.score(d) >= cal.threshold for d in fix_designs[: len(given)]]
    wrong = [c for c, junked in zip(given, replay, strict=True) if junked != (c.label == "spam")]
    kept = [layer.score(d) for d, y in zip(designs, labels.tolist(), strict=True) if y == 0]
    kept_junked = sum(s >= cal.threshold for s in kept)
    allowed = max(math.floor(budget * (len(kept) + 1)) - 1, 0)
    refused = _refusal(wrong, kept_junked, len(kept), allowed)
    if not refused:
        write_private(files.layer, personal.to_bytes(layer, base.version))
        if recalibrate:
            write_private(files.calibration, calibration.to_json(cal).encode())
    return {
        "account": account,
        "promoted": not refused,
        "refused": refused,
        "sample": len(designs),
        "corrections": len(given),
        "corrections_right": len(given) - len(wrong),
        "bootstrap_labels": len(guessed),
        "kept_junked": kept_junked,
        "offsets": int(layer.cols.size),
        "layer_bytes": layer.nbytes,
        "calibrated": recalibrate,
        "threshold": round(cal.threshold, 4),
        "seconds": round(time.monotonic() - started, 2),
    }


def _sample(files: AccountFiles, version: str) -> tuple[list[personal.Design], np.ndarray]:
    """The account's calibration sample, if it was read with the live model."""
    try:
        blob = files.sample.read_bytes()
    except FileNotFoundError:
        return [], np.zeros(0, dtype=int)
    designs, labels, of = personal.designs_from_bytes(blob, str(files.sample))
    if of != version:
        raise ModelError(
            f"the calibration sample was read with model {of}, the live model is {version}: "
            "the account must calibrate again",
            path=files.sample,
        )
    return designs, labels


def _stored_layer(files: AccountFiles, version: str) -> personal.Layer:
    try:
        layer, of = personal.from_bytes(files.layer.read_bytes(), str(files.layer))
    except FileNotFoundError:
        return personal.EMPTY
    return layer if of == version else personal.EMPTY


def _stored_calibration(files: AccountFiles, threshold: float) -> Calibration:
    try:
        return calibration.from_json(files.calibration.read_text(), str(files.calibration))
    except FileNotFoundError:
        return calibration.uncalibrated(threshold)


def _corrections(state: State, account: str) -> tuple[list[Correction], list[Correction]]:
    """(given by the user, guessed from folders): one label per message, the newest."""
    seen: dict[str, Correction] = {}
    for c in state.corrections(account, limit=MAX_EXAMPLES, with_raw=True, learnt_only=True):
        seen.setdefault(c.content_hash, c)  # newest first
    latest = list(reversed(seen.values()))
    return [c for c in latest if c.how != BOOTSTRAP], [c for c in latest if c.how == BOOTSTRAP]


def _refusal(wrong: Sequence[Correction], kept_junked: int, kept: int, allowed: int) -> str:
    if wrong:
        subjects = "; ".join(f"{c.label} {c.subject[:40]!r}" for c in wrong[:3])
        return f"gets {len(wrong)} correction(s) wrong: {subjects}"
    if kept_junked > allowed:
        return f"would junk {kept_junked} of the account's {kept} kept messages"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spamd.training.layers", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True, help="the configured model file")
    parser.add_argument("--account", required=True)
    parser.add_argument("--calibrate", action="store_true", help="set the threshold again")
    args = parser.parse_args(argv)
    try:
        state = State(args.state_dir / FILE_NAME)
        try:
            outcome = fit_account(
                ModelStore(args.state_dir, args.base), state,
                AccountFiles(args.state_dir, args.account), recalibrate=args.calibrate,
            )  # fmt: skip
        finally:
            state.close()
    except SpamdError as exc:
        print(json.dumps({"error": str(exc), "kind": type(exc).__name__}))
        return 1
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
