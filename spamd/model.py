"""The classifier: TF-IDF + logistic regression over hashed message channels.

The pipeline has three steps:

1. ``hash``: each channel of `features.Features` is hashed into its own block of
   columns (raw token counts; stateless, so base data can be kept as counts and
   retrained on later without refitting a vocabulary);
2. ``tfidf``: a TF-IDF transform fitted per channel (sublinear tf, l2 norm per
   channel), so a long body cannot drown the subject or the sender;
3. ``clf``: logistic regression, whose probability is the spam score.

The decision threshold is not 0.5: it is chosen on out-of-fold scores so that
at most `fp_budget` of ham would be junked, and stored with the model.

Security: a model file is a pickle, and loading a pickle runs code. `load`
therefore refuses a file that is world-writable or whose SHA-256 differs from
the metadata beside it, and checks the hash on the very bytes it unpickles.
Only load model files you or your package manager wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import platform
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from spamd import __version__, metrics
from spamd.errors import ModelError
from spamd.features import FEATURE_VERSION, Features, extract
from spamd.message import DEFAULT_MAX_BYTES, parse

MODEL_FORMAT = "spamd-model/1"
DEFAULT_FP_BUDGET = 0.001
MIN_THRESHOLD = 0.5  # never junk on a coin flip, whatever held-out data suggests
# Columns per channel. The body gets the most room: it has by far the most
# distinct tokens, and collisions there cost the most.
DEFAULT_CHANNELS = ("subject", "body")  # see features.py and bench/ablation.py
DEFAULT_C = 12.0
CHANNEL_SIZES = {"subject": 2**16, "body": 2**19, "meta": 2**14, "sender": 2**16, "urls": 2**16}
RETRAIN_HINT = "retrain it with `spamd train --corpus DIR --out PATH`"


class MessageHasher(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Features -> sparse token counts, one block of hashed columns per channel."""

    def __init__(self, sizes: tuple[tuple[str, int], ...] = tuple(CHANNEL_SIZES.items())) -> None:
        self.sizes = sizes

    def fit(self, x: Sequence[Features], y: object = None) -> MessageHasher:
        return self

    def transform(self, x: Sequence[Features]) -> sp.csr_matrix:
        blocks = [
            _hasher(size).transform([f.channel(name) for f in x]) for name, size in self.sizes
        ]
        return sp.hstack(blocks, format="csr", dtype=np.float64)

    def columns_of(self, features: Features) -> dict[int, str]:
        """Column -> "channel:token" for every token of one message (for explanations)."""
        names: dict[int, str] = {}
        offset = 0
        for name, size in self.sizes:
            tokens = list(dict.fromkeys(features.channel(name)))
            if tokens:
                rows = _hasher(size).transform([[t] for t in tokens]).tocsr()
                for token, column in zip(tokens, rows.indices, strict=True):
                    label = f"{name}:{token}"
                    key = offset + int(column)
                    names[key] = f"{names[key]} | {label}" if key in names else label
            offset += size
        return names


def _hasher(size: int) -> FeatureHasher:
    return FeatureHasher(n_features=size, input_type="string", alternate_sign=False)


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
            ("clf", LogisticRegression(C=c, class_weight=class_weight, solver="liblinear")),
        ]
    )


@dataclass(frozen=True, slots=True)
class Metadata:
    """What a model file says about itself; stored as JSON beside it."""

    threshold: float
    ham: int
    spam: int
    sources: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: str = ""
    fp_budget: float = DEFAULT_FP_BUDGET
    max_bytes: int = DEFAULT_MAX_BYTES
    feature_version: int = FEATURE_VERSION
    format: str = MODEL_FORMAT
    versions: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> Metadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"metadata is not valid JSON ({exc})", path=path) from None
        if not isinstance(data, dict):
            raise ModelError("metadata is not a JSON object", path=path)
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"threshold", "ham", "spam", "sha256", "format"} - data.keys()
        if missing:
            raise ModelError(f"metadata lacks {', '.join(sorted(missing))}", path=path)
        try:
            meta = cls(**{k: v for k, v in data.items() if k in known})
            meta = dataclasses.replace(meta, sources=tuple(meta.sources))
            float(meta.threshold)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"metadata has a wrong field ({exc})", path=path) from None
        return meta


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
class Term:
    term: str
    weight: float  # contribution to the log-odds of spam


@dataclass(frozen=True, slots=True)
class Explanation:
    score: float
    spam: bool
    up: tuple[Term, ...]
    down: tuple[Term, ...]


class Model:
    """A trained pipeline with its metadata: scores raw messages."""

    def __init__(self, pipeline: Pipeline, metadata: Metadata) -> None:
        self.pipeline = pipeline
        self.metadata = metadata

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    @property
    def version(self) -> str:
        return self.metadata.sha256[:12] or "unsaved"

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.pipeline.named_steps["hash"].sizes)

    def features(self, raw: bytes) -> Features:
        return extract(parse(raw, self.metadata.max_bytes), self.channels)

    def score(self, raw: bytes) -> float:
        return float(self.score_features([self.features(raw)])[0])

    def score_many(self, raws: Iterable[bytes]) -> np.ndarray:
        return self.score_features([self.features(raw) for raw in raws])

    def score_features(self, features: Sequence[Features]) -> np.ndarray:
        if not features:
            return np.empty(0)
        return np.asarray(self.pipeline.predict_proba(features)[:, 1], dtype=float)

    def is_spam(self, score: float) -> bool:
        return bool(score >= self.threshold)

    def explain(self, raw: bytes, top: int = 10) -> Explanation:
        features = self.features(raw)
        hasher: MessageHasher = self.pipeline.named_steps["hash"]
        weighted = self.pipeline.named_steps["tfidf"].transform(hasher.transform([features]))
        row = sp.csr_matrix(weighted)
        coef = self.pipeline.named_steps["clf"].coef_[0]
        names = hasher.columns_of(features)
        terms = [
            Term(names.get(int(col), f"#{col}"), float(value * coef[col]))
            for col, value in zip(row.indices, row.data, strict=True)
        ]
        terms.sort(key=lambda t: t.weight)
        score = float(self.score_features([features])[0])
        return Explanation(
            score=score,
            spam=self.is_spam(score),
            up=tuple(t for t in reversed(terms[-top:]) if t.weight > 0),
            down=tuple(t for t in terms[:top] if t.weight < 0),
        )


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
    held_out = metrics.report(y, oof, threshold)
    on_step("fitting the final model")
    learner.fit(counts, y)
    fitted = Pipeline([pipeline.steps[0], *learner.steps])
    metadata = Metadata(
        threshold=threshold,
        ham=n_ham,
        spam=n_spam,
        sources=tuple(sources),
        metrics={
            k: v
            for k, v in held_out.as_dict().items()
            if k
            in {
                "roc_auc",
                "precision",
                "recall",
                "false_positive_rate",
                "recall_at_fpr_0_1pct",
                "recall_at_fpr_1pct",
            }
        },
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        fp_budget=fp_budget,
        versions=library_versions(),
    )
    return Model(fitted, metadata)


def metadata_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def save(model: Model, path: Path) -> Model:
    """Write the pipeline and its metadata atomically; returns the model with its hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    # Uncompressed on purpose: decompressing costs a scoring process ~70 MB of
    # peak memory, and the arrays are only ~10 MB.
    joblib.dump(model.pipeline, buffer, compress=0)
    blob = buffer.getvalue()
    metadata = dataclasses.replace(model.metadata, sha256=hashlib.sha256(blob).hexdigest())
    _write_atomically(path, blob)
    _write_atomically(metadata_path(path), metadata.to_json().encode())
    return Model(model.pipeline, metadata)


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
    """Load a model file after checking its permissions, checksum and versions."""
    meta_file = metadata_path(path)
    for file in (path, meta_file):
        try:
            mode = file.stat().st_mode
        except FileNotFoundError:
            what = "model file" if file == path else "metadata file beside the model"
            raise ModelError(f"{what} not found; {RETRAIN_HINT}", path=file) from None
        except OSError as exc:
            raise ModelError(f"cannot read ({exc.strerror})", path=file) from None
        if mode & stat.S_IWOTH:
            raise ModelError(
                "refusing a world-writable model file: anyone could have replaced it, and "
                "loading it runs code; fix with `chmod o-w`",
                path=file,
            )
    try:
        blob = path.read_bytes()
        meta = Metadata.from_json(meta_file.read_text(encoding="utf-8"), meta_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read ({exc})", path=path) from None
    _check_compatible(meta, blob, path)
    try:
        pipeline = joblib.load(io.BytesIO(blob))
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise ModelError(
            f"cannot unpickle ({type(exc).__name__}); {RETRAIN_HINT}", path=path
        ) from None
    if not isinstance(pipeline, Pipeline) or list(pipeline.named_steps) != ["hash", "tfidf", "clf"]:
        raise ModelError(f"not a spamd pipeline; {RETRAIN_HINT}", path=path)
    return Model(pipeline, meta)


def _check_compatible(meta: Metadata, blob: bytes, path: Path) -> None:
    if meta.format != MODEL_FORMAT:
        raise ModelError(
            f"format {meta.format!r}, expected {MODEL_FORMAT!r}; {RETRAIN_HINT}", path=path
        )
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta.sha256:
        raise ModelError(
            f"SHA-256 {digest[:12]}… does not match its metadata ({meta.sha256[:12]}…): "
            "the file was changed or damaged; restore it or " + RETRAIN_HINT,
            path=path,
        )
    if meta.feature_version != FEATURE_VERSION:
        raise ModelError(
            f"trained on feature format {meta.feature_version}, this spamd uses "
            f"{FEATURE_VERSION}; {RETRAIN_HINT}",
            path=path,
        )
    trained_with = meta.versions.get("scikit-learn", "?")
    if _major_minor(trained_with) != _major_minor(sklearn.__version__):
        raise ModelError(
            f"trained with scikit-learn {trained_with}, this install has "
            f"{sklearn.__version__}; {RETRAIN_HINT}",
            path=path,
        )


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
