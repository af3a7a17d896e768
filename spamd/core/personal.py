"""Personal layers: one account's adjustment on top of the shared base model. Pure.

The base model's logit for a message is ``z = intercept + x . w`` (`Scorer.design`:
x is the message's TF-IDF vector, l2-normed per channel). An account's layer adds
sparse offsets ``d`` on the columns its own mail uses and a bias ``b``:

    logit = z + x . d + b

fitted by logistic regression on the account's labelled mail (its corrections
and bootstrap labels; a ham weighs `HAM_WEIGHT` spam), with an L2 penalty
``|d|^2 + |b|^2`` of strength 1/`DEFAULT_C` that pulls the layer toward the base:
with no mail it is empty and the account scores exactly as the base.

What one user can do to the filter, and to nobody else: a layer is fitted on
one account's mail only and used for that account's verdicts only, so another
user's corrections cannot move this account's scores (tests check this). The
penalty also bounds how far a user can move their own scores: at the optimum
``|d|^2 + |b|^2 <= 2 C L0``, where L0 is the (weighted) log-loss of the base on
their examples, and as x has unit norm per channel the shift of any message's
logit is at most ``|b| + sum over channels of |d_channel|``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from spamd.core.features import Features
from spamd.core.scorer import Scorer
from spamd.errors import ModelError

if TYPE_CHECKING:
    import scipy.sparse as sp

DEFAULT_C = 30.0  # inverse penalty; chosen with bench/dayone.py (10 before issue 18's second pass)
# Precision first: a kept (ham) message weighs this many junked ones in a fit, as a
# wrongly junked ham costs far more than a missed spam (the budget is 0.1 % of ham).
# bench/dayone.py, SpamAssassin as the mailbox, 2,000 + 948 labels: the newest ham
# scored 0.98 / 0.93 / 0.91 with weight 1 and 0.98 / 0.89 / 0.87 with 4, spam
# scores barely moving; 4 ham junked for 0.80 caught became 2.
HAM_WEIGHT = 4.0
CORRECTION_WEIGHT = 5.0  # a user's correction against one sample label (as in bench/dayone.py)
MAX_OFFSETS = 8192  # the largest are kept: 64 KB per account (int32 column + float32)

Design = tuple[np.ndarray, np.ndarray, float]  # columns, values, base logit (`Scorer.design`)


@dataclass(frozen=True, slots=True)
class Layer:
    cols: np.ndarray  # int32, sorted: the columns with an offset
    offsets: np.ndarray  # float32, one per column
    bias: float
    examples: int  # labelled messages it was fitted on

    @property
    def nbytes(self) -> int:
        return int(self.cols.nbytes + self.offsets.nbytes)

    def shift(self, cols: np.ndarray, x: np.ndarray) -> float:
        """How much this layer moves the logit of a message (`Scorer.design`)."""
        if not self.cols.size:
            return self.bias
        at = np.minimum(np.searchsorted(self.cols, cols), self.cols.size - 1)
        hit = self.cols[at] == cols
        return self.bias + float(np.dot(x[hit], self.offsets[at[hit]]))

    def logit(self, design: Design) -> float:
        cols, x, base = design
        return base + self.shift(cols, x)

    def score(self, design: Design) -> float:
        return _sigmoid(self.logit(design))


EMPTY = Layer(np.empty(0, np.int32), np.empty(0, np.float32), 0.0, 0)


def fit(
    designs: Sequence[Design],
    labels: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    c: float = DEFAULT_C,
    start: Layer = EMPTY,
) -> Layer:
    """The layer that best explains an account's labels (1 spam, 0 ham) on top of the
    base; `start` (the account's previous layer) only makes the fit faster."""
    from scipy.optimize import minimize  # noqa: PLC0415 - only where layers are fitted

    y = np.asarray(labels, dtype=float)
    if y.size == 0:
        return EMPTY
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=float)
    w = w * np.where(y == 0, HAM_WEIGHT, 1.0)
    cols, x, base = _matrix(designs)
    sign = 2 * y - 1
    m = cols.size

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = sign * (base + x @ theta[:m] + theta[m])
        # log(1 + exp(-margin)), stably, and its derivative -sigmoid(-margin)
        value = float(np.dot(w, np.logaddexp(0.0, -margin))) + float(theta @ theta) / (2 * c)
        g = -w * sign * _sigmoids(-margin)
        grad = np.concatenate([x.T @ g, [g.sum()]]) + theta / c
        return value, grad

    theta = np.zeros(m + 1)
    if start.cols.size:
        at = np.minimum(np.searchsorted(cols, start.cols), m - 1)
        hit = cols[at] == start.cols
        theta[at[hit]] = start.offsets[hit]
    theta[m] = start.bias

    def hessp(theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        p = _sigmoids(sign * (base + x @ theta[:m] + theta[m]))
        dxv = w * p * (1 - p) * (x @ v[:m] + v[m])
        return np.concatenate([x.T @ dxv, [dxv.sum()]]) + v / c

    # Newton-CG: ~10 Newton steps; L-BFGS-B took 4x the CPU for the same optimum.
    result = minimize(loss, theta, jac=True, hessp=hessp, method="Newton-CG")
    offsets = result.x[:m]
    keep = np.sort(np.argsort(-np.abs(offsets), kind="stable")[:MAX_OFFSETS])
    keep = keep[offsets[keep] != 0]
    return Layer(
        cols[keep].astype(np.int32), offsets[keep].astype(np.float32), float(result.x[m]), y.size
    )


def cross_scores(
    designs: Sequence[Design],
    labels: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    c: float = DEFAULT_C,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Each message scored by a layer fitted without it (k folds): what calibration
    needs, since a layer's scores of its own training mail are too confident."""
    y = np.asarray(labels, dtype=int)
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=float)
    fold_of = np.random.default_rng(seed).permutation(y.size) % folds
    scores = np.zeros(y.size)
    for k in range(folds):
        held = np.flatnonzero(fold_of == k).tolist()
        used = np.flatnonzero(fold_of != k).tolist()
        layer = fit([designs[i] for i in used], y[used], w[used], c=c)
        scores[held] = [layer.score(designs[i]) for i in held]
    return scores


def _matrix(designs: Sequence[Design]) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """The union of the messages' columns, their values over it, and the base logits."""
    import scipy.sparse as sp  # noqa: PLC0415 - only where layers are fitted, not in the daemon

    cols = np.unique(np.concatenate([d[0] for d in designs]))
    indptr = np.cumsum([0, *(d[0].size for d in designs)])
    indices = np.searchsorted(cols, np.concatenate([d[0] for d in designs]))
    values = np.concatenate([d[1] for d in designs])
    x = sp.csr_matrix((values, indices, indptr), shape=(len(designs), cols.size))
    return cols, x, np.array([d[2] for d in designs])


def _sigmoids(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.exp(-np.logaddexp(0.0, -z))
    return out


def _sigmoid(z: float) -> float:
    return float(np.exp(-np.logaddexp(0.0, -z)))


class PersonalScorer(Scorer):
    """The shared base with one account's layer: what that account's mail is scored by.

    It shares the base's arrays (nothing is copied), so an account costs only
    its layer; its version names both, so decisions say which layer decided."""

    def __init__(self, base: Scorer, layer: Layer) -> None:
        vars(self).update(vars(base))  # the base's weights, by reference
        self.base = base
        self.layer = layer

    @property
    def version(self) -> str:
        if not self.layer.examples:
            return self.base.version
        return f"{self.base.version}+{layer_tag(self.layer)}"

    def score_extracted(self, features: Features) -> float:
        return self.layer.score(self.design(features))

    def _probability(self, shares: np.ndarray) -> float:  # `explain`: base terms, layer's bias
        return _sigmoid(self.intercept + float(shares.sum()) + self.layer.bias)


def layer_tag(layer: Layer) -> str:
    """A short digest of a layer (for model versions in decisions and logs)."""
    digest = hashlib.sha256(layer.cols.tobytes() + layer.offsets.tobytes())
    digest.update(np.float64(layer.bias).tobytes())
    return digest.hexdigest()[:8]


def to_bytes(layer: Layer, base_version: str) -> bytes:
    """A layer as a file (npz), with the version of the base it was fitted on."""
    out = io.BytesIO()
    np.savez(
        out,
        cols=layer.cols,
        offsets=layer.offsets,
        bias=np.float64(layer.bias),
        examples=np.int64(layer.examples),
        base=np.str_(base_version),
    )
    return out.getvalue()


def from_bytes(blob: bytes, source: str) -> tuple[Layer, str]:
    """(layer, base version) from `to_bytes`; ModelError naming `source` if it is not one."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            cols = data["cols"].astype(np.int32)
            offsets = data["offsets"].astype(np.float32)
            layer = Layer(cols, offsets, float(data["bias"]), int(data["examples"]))
            base = str(data["base"])
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ModelError(f"not a personal layer ({exc!r})", path=source) from None
    if cols.shape != offsets.shape or (cols.size and np.any(np.diff(cols) <= 0)):
        raise ModelError("not a personal layer (columns unsorted or offsets missing)", path=source)
    return layer, base


def designs_to_bytes(designs: Sequence[Design], labels: ArrayLike, base_version: str) -> bytes:
    """An account's calibration sample as the base saw it (no message text), for refits."""
    out = io.BytesIO()
    sizes = np.array([d[0].size for d in designs], dtype=np.int64)
    np.savez(
        out,
        cols=np.concatenate([d[0] for d in designs]).astype(np.int32) if designs else np.empty(0),
        values=np.concatenate([d[1] for d in designs]).astype(np.float32)
        if designs
        else np.empty(0),
        sizes=sizes,
        logits=np.array([d[2] for d in designs], dtype=np.float64),
        labels=np.asarray(labels, dtype=np.int8),
        base=np.str_(base_version),
    )
    return out.getvalue()


def designs_from_bytes(blob: bytes, source: str) -> tuple[list[Design], np.ndarray, str]:
    """(designs, labels, base version) from `designs_to_bytes`; ModelError if not one."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            ends = np.cumsum(data["sizes"])
            cols = np.split(data["cols"].astype(np.int64), ends[:-1])
            values = np.split(data["values"].astype(np.float64), ends[:-1])
            logits = data["logits"]
            labels = data["labels"].astype(int)
            base = str(data["base"])
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ModelError(f"not a calibration sample ({exc!r})", path=source) from None
    if not len(logits) == len(labels) == len(ends):
        raise ModelError("not a calibration sample (lengths differ)", path=source)
    designs = [(c, v, float(z)) for c, v, z in zip(cols, values, logits.tolist(), strict=True)]
    return designs, labels, base
