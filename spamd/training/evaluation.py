"""Held-out evaluation: splitting labelled data, and the ROC/threshold chart."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.metrics import roc_curve
from sklearn.model_selection import train_test_split

from spamd.errors import InputError
from spamd.training.corpus import Examples

Split = Literal["stratified", "time"]


def split(
    examples: Examples, how: Split, test_size: float = 0.2, seed: int = 0
) -> tuple[Examples, Examples]:
    """Stratified random split, or oldest (1 - test_size) for training by delivery time."""
    indices = np.arange(len(examples.labels))
    if how == "time":
        order = np.argsort(np.asarray(examples.times), kind="stable")
        cut = round(len(order) * (1 - test_size))
        return examples.subset(order[:cut]), examples.subset(order[cut:])
    train_idx, test_idx = train_test_split(
        indices, test_size=test_size, random_state=seed, stratify=examples.labels
    )
    return examples.subset(sorted(train_idx)), examples.subset(sorted(test_idx))


def check_plotting(out: Path) -> None:
    """Raise an InputError now, not after an evaluation's work, if `plot` cannot run."""
    try:
        import matplotlib  # noqa: F401, PLC0415 - optional dependency, only for --plot
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'spamd[plot]'", path=out) from None


def plot(labels: list[int], scores: np.ndarray, threshold: float, out: Path, title: str) -> None:
    """Write a PNG: ROC curve (log FPR axis) beside the score distributions."""
    check_plotting(out)
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency, only for --plot

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    y = np.asarray(labels)
    fpr, tpr, _ = roc_curve(y, scores)
    fig, (roc, hist) = plt.subplots(1, 2, figsize=(12, 5))
    fig.suptitle(title)
    roc.plot(np.maximum(fpr, 1e-4), tpr, color="tab:blue")
    roc.axvline(0.001, color="grey", linestyle=":", label="FPR 0.1 %")
    roc.axvline(0.01, color="grey", linestyle="--", label="FPR 1 %")
    roc.set_xscale("log")
    roc.set_xlim(1e-4, 1)
    roc.set_xlabel("false-positive rate (ham sent to Junk), log scale")
    roc.set_ylabel("recall (spam caught)")
    roc.set_title("ROC curve")
    roc.grid(alpha=0.3)
    roc.legend(loc="lower right")
    bins = np.linspace(0, 1, 51)
    hist.hist(scores[y == 0], bins=bins, alpha=0.6, label="ham", color="tab:green")
    hist.hist(scores[y == 1], bins=bins, alpha=0.6, label="spam", color="tab:red")
    hist.axvline(threshold, color="black", label=f"threshold {threshold:.3f}")
    hist.set_yscale("log")
    hist.set_xlabel("spam score")
    hist.set_ylabel("messages (log scale)")
    hist.set_title("Scores by true class")
    hist.legend()
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise InputError(f"cannot write the plot ({exc.strerror})", path=out) from None
    finally:
        plt.close(fig)
