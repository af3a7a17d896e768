"""Training: TF-IDF + logistic regression over hashed message channels.

The pipeline has three steps:

1. ``hash``: each channel of `features.Features` is hashed into its own block of
   columns (raw token counts; stateless, so base data can be kept as counts and
   retrained on later without refitting a vocabulary);
2. ``tfidf``: a TF-IDF transform fitted per channel (sublinear tf, l2 norm per
   channel), so a long body cannot drown the subject or the sender;
3. ``clf``: logistic regression, whose probability is the spam score.

The decision threshold is not 0.5: it is chosen on out-of-fold scores so that
at most `fp_budget` of ham would be junked, and stored with the model.

A saved model is three files: ``X.joblib`` (the whole fitted pipeline),
``X.npz`` (its weights as plain arrays, what `scorer.Scorer` runs) and
``X.json`` (metadata with the SHA-256 of both); plus ``X.base.npz``, the hashed
token counts it was trained on, from which `retrain` learns users' corrections
without forgetting the base. Security: the ``.joblib`` file
is a pickle, and loading a pickle runs code. `load` therefore refuses a file
that is group- or world-writable, owned by anyone but root or the user spamd
runs as, or whose SHA-256 differs from the metadata, and checks
the hash on the very bytes it unpickles. Only load model files you or your
package manager wrote. The daemon never unpickles: it loads the ``.npz``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from spamd import __version__
from spamd.core import scorer as scorer_lib
from spamd.core.calibration import MIN_THRESHOLD
from spamd.core.features import DEFAULT_CHANNELS, Features
from spamd.core.scorer import DEFAULT_FP_BUDGET, RETRAIN_HINT, Channel, Metadata, Scorer
from spamd.errors import ModelError
from spamd.training import metrics

# The threshold is never below MIN_THRESHOLD (0.9), whatever out-of-fold scores
# suggest. On a corpus whose classes separate (modern_public alone), no ham scores
# above 0.5 out of fold, and the threshold fell to the old floor of 0.5; on a
# stranger's mail that junked 22 % of ham (bench/dayone.py, base trained on
# modern_public, SpamAssassin ham); at 0.9, 0.19 %.
DEFAULT_C = 30.0
# Columns per channel (powers of two). The body gets the most room: it has by
# far the most distinct tokens, and collisions there cost the most.
CHANNEL_SIZES = {"subject": 2**16, "body": 2**19, "meta": 2**14, "sender": 2**16, "urls": 2**16}
HELD_OUT_METRICS = (
    "roc_auc",
    "precision",
    "recall",
    "false_positive_rate",
    "recall_at_fpr_0_1pct",
    "recall_at_fpr_1pct",
)


class MessageHasher(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Features -> sparse token counts, one block of hashed columns per channel."""

    def __init__(self, sizes: tuple[tuple[str, int], ...] = tuple(CHANNEL_SIZES.items())) -> None:
        self.sizes = sizes

    def fit(self, x: Sequence[Features], y: object = None) -> MessageHasher:
        return self

    def transform(self, x: Sequence[Features]) -> sp.csr_matrix:
        indptr = [0]
        indices: list[np.ndarray] = []
        data: list[np.ndarray] = []
        for features in x:
            nnz = indptr[-1]
            offset = 0
            for name, size in self.sizes:
                tokens = features.channel(name)
                if tokens:
                    cols, counts = scorer_lib.columns(tokens, size)
                    indices.append(cols + offset)
                    data.append(counts)
                    nnz += cols.size
                offset += size
            indptr.append(nnz)
        width = sum(size for _, size in self.sizes)
        return sp.csr_matrix(
            (
                np.concatenate(data).astype(np.float64) if data else np.empty(0),
                np.concatenate(indices) if indices else np.empty(0, dtype=np.int64),
                np.array(indptr),
            ),
            shape=(len(x), width),
        )


def build_pipeline(
    c: float = DEFAULT_C,
    class_weight: str | None = "balanced",
    channels: Sequence[str] = DEFAULT_CHANNELS,
) -> Pipeline:
    hasher = MessageHasher(tuple((name, CHANNEL_SIZES[name]) for name in channels))
    blocks = []
    offset = 0
    for name, size in hasher.sizes:
        blocks.append((name, TfidfTransformer(sublinear_tf=True), slice(offset, offset + size)))
        offset += size
    return Pipeline(
        [
            ("hash", hasher),
            ("tfidf", ColumnTransformer(blocks, sparse_threshold=1.0)),
            # The primal problem. The dual fits ordinary corrections ~2x faster but a
            # correction that contradicts the base data (a spam-like message rescued)
            # ~1.5x slower, and that is the case users wait for.
            ("clf", LogisticRegression(C=c, class_weight=class_weight, solver="liblinear")),
        ]
    )


def library_versions() -> dict[str, str]:
    return {
        "spamd": __version__,
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


@dataclass(frozen=True, slots=True)
class Model:
    """A fitted pipeline and the scorer made from it (which carries the metadata)."""

    pipeline: Pipeline
    scorer: Scorer
    base: tuple[sp.csr_matrix, np.ndarray] | None = None  # training counts, for retraining

    @property
    def metadata(self) -> Metadata:
        return self.scorer.metadata


def scorer_from(pipeline: Pipeline, metadata: Metadata) -> Scorer:
    """The plain-array scorer equivalent to a fitted pipeline."""
    hasher: MessageHasher = pipeline.named_steps["hash"]
    tfidf: ColumnTransformer = pipeline.named_steps["tfidf"]
    clf: LogisticRegression = pipeline.named_steps["clf"]
    coef = clf.coef_[0]
    channels = []
    offset = 0
    for name, size in hasher.sizes:
        idf = tfidf.named_transformers_[name].idf_
        channels.append(
            Channel(
                name,
                np.asarray(idf, dtype=np.float32),
                np.asarray(coef[offset : offset + size], dtype=np.float32),
            )
        )
        offset += size
    return Scorer(channels, float(clf.intercept_[0]), metadata)


def out_of_fold_scores(
    pipeline: Pipeline, counts: sp.csr_matrix, labels: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """Scores each example with a model that never saw it (stratified k-fold)."""
    scores = np.zeros(labels.shape[0])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(counts, labels):
        fold = clone(pipeline).fit(counts[train_idx], labels[train_idx])
        scores[test_idx] = fold.predict_proba(counts[test_idx])[:, 1]
    return scores


def train(
    features: Sequence[Features],
    labels: Sequence[int],
    *,
    sources: Sequence[str] = (),
    fp_budget: float = DEFAULT_FP_BUDGET,
    folds: int = 5,
    seed: int = 0,
    pipeline: Pipeline | None = None,
    on_step: Callable[[str], None] = lambda step: None,
) -> Model:
    """Fit a model and choose its threshold on out-of-fold scores for `fp_budget`."""
    y = np.asarray(labels, dtype=int)
    n_spam = int(y.sum())
    n_ham = int(y.size - n_spam)
    if n_ham < folds or n_spam < folds:
        raise ModelError(
            f"training needs at least {folds} messages of each class, "
            f"got {n_ham} ham and {n_spam} spam"
        )
    pipeline = pipeline or build_pipeline()
    hasher = pipeline.steps[0][1]
    learner = Pipeline(pipeline.steps[1:])
    on_step("vectorizing")
    counts = hasher.transform(features)
    on_step(f"choosing the threshold ({folds}-fold)")
    oof = out_of_fold_scores(learner, counts, y, folds, seed)
    threshold = max(MIN_THRESHOLD, metrics.threshold_for_fpr(oof[y == 0], fp_budget))
    held_out = metrics.report(y, oof, threshold).as_dict()
    on_step("fitting the final model")
    learner.fit(counts, y)
    fitted = Pipeline([pipeline.steps[0], *learner.steps])
    metadata = Metadata(
        threshold=threshold,
        ham=n_ham,
        spam=n_spam,
        sources=tuple(sources),
        metrics={k: held_out[k] for k in HELD_OUT_METRICS},
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        fp_budget=fp_budget,
        versions=library_versions(),
    )
    return Model(fitted, scorer_from(fitted, metadata), base=(counts, y))


def save(model: Model, path: Path) -> Scorer:
    """Write pipeline, weights and metadata atomically; returns the scorer with its hashes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    # Uncompressed on purpose: decompressing costs a loading process ~70 MB of
    # peak memory, and the arrays are only ~10 MB.
    joblib.dump(model.pipeline, buffer, compress=0)
    blob = buffer.getvalue()
    scorer = model.scorer
    metadata = dataclasses.replace(model.metadata, sha256=hashlib.sha256(blob).hexdigest())
    _write_atomically(path, blob)
    saved = save_weights(Scorer(scorer.channel_weights, scorer.intercept, metadata), path)
    if model.base is not None:
        write_base(*model.base, base_path(path))
    return saved


def save_weights(scorer: Scorer, path: Path) -> Scorer:
    """Write a scorer's ``.npz`` and ``.json`` (the metadata last: until it is
    written, the old metadata refuses the new weights)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = scorer_lib.weights_bytes(scorer.channel_weights, scorer.intercept)
    metadata = dataclasses.replace(
        scorer.metadata, weights_sha256=hashlib.sha256(weights).hexdigest()
    )
    _write_atomically(scorer_lib.weights_path(path), weights)
    _write_atomically(scorer_lib.metadata_path(path), metadata.to_json().encode())
    return Scorer(scorer.channel_weights, scorer.intercept, metadata)


def base_path(model_path: Path) -> Path:
    return model_path.with_suffix(".base.npz")


def write_base(counts: sp.csr_matrix, labels: np.ndarray, path: Path) -> None:
    """The hashed counts a model was trained on, compactly: column indices are
    stored as gaps within each row and counts are capped at 255 (TF is
    sublinear: log(255) and log(2000) weigh almost the same)."""
    counts = sp.csr_matrix(counts)
    counts.sort_indices()
    indices = counts.indices.astype(np.int64)
    gaps = np.diff(indices, prepend=0)
    starts = counts.indptr[:-1][np.diff(counts.indptr) > 0]
    gaps[starts] = indices[starts]
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        gaps=gaps.astype(np.uint32),
        counts=np.minimum(counts.data, 255).astype(np.uint8),
        indptr=counts.indptr.astype(np.int64),
        labels=np.asarray(labels, dtype=np.int8),
        width=np.array([counts.shape[1]]),
    )
    path.write_bytes(buffer.getvalue())


def read_base(path: Path) -> tuple[sp.csr_matrix, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            indptr = arrays["indptr"]
            gaps = arrays["gaps"].astype(np.int64)
            data = arrays["counts"].astype(np.float64)
            labels = arrays["labels"].astype(int)
            width = int(arrays["width"][0])
    except FileNotFoundError:
        raise ModelError(
            "no base data beside the model: retraining needs the file `spamd train` writes",
            path=path,
        ) from None
    except (KeyError, ValueError, OSError) as exc:
        raise ModelError(f"not a spamd base data file ({exc})", path=path) from None
    # Undo the gaps: a running sum that restarts at each row.
    row_of = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    sums = np.cumsum(gaps)
    starts = indptr[:-1][np.diff(indptr) > 0]
    offsets = np.zeros(indptr.size - 1, dtype=np.int64)
    offsets[np.diff(indptr) > 0] = sums[starts] - gaps[starts]
    indices = sums - offsets[row_of]
    return sp.csr_matrix((data, indices, indptr), shape=(indptr.size - 1, width)), labels


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Model:
    """Load a whole model (pipeline and scorer) after checking hashes and versions."""
    scorer = scorer_lib.load(path)
    meta = scorer.metadata
    trained_with = meta.versions.get("scikit-learn", "?")
    if _major_minor(trained_with) != _major_minor(sklearn.__version__):
        raise ModelError(
            f"trained with scikit-learn {trained_with}, this install has "
            f"{sklearn.__version__}; {RETRAIN_HINT}",
            path=path,
        )
    blob = scorer_lib.read_checked(path, "model file")
    scorer_lib.check_digest(blob, meta.sha256, path)
    try:
        pipeline = joblib.load(io.BytesIO(blob))
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise ModelError(
            f"cannot unpickle ({type(exc).__name__}); {RETRAIN_HINT}", path=path
        ) from None
    if not isinstance(pipeline, Pipeline) or list(pipeline.named_steps) != ["hash", "tfidf", "clf"]:
        raise ModelError(f"not a spamd pipeline; {RETRAIN_HINT}", path=path)
    return Model(pipeline, scorer)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
