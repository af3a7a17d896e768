"""Scoring with a trained model, in plain numpy: what the daemon runs.

A trained pipeline (`model.py`) is linear once fitted, so scoring needs only,
per channel, the hashed column of each token, the IDF weights and the
regression coefficients:

    x_c   = (1 + log count) * idf_c[column]     per distinct column of channel c
    logit = intercept + sum_c (x_c . coef_c) / |x_c|
    score = 1 / (1 + exp(-logit))

`model.save` writes those arrays to a ``.npz`` file beside the ``.joblib``
pipeline. Loading them needs neither scikit-learn (about 110 MB of a process's
memory) nor unpickling (which runs code): the daemon and `spamd classify` use
this module, and a model file can only be data to them.

Tokens are hashed with CRC-32 (`features.count`: stable across processes,
unlike `hash()`); training hashes with the same `columns` function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spamd.core.features import FEATURE_VERSION, Counted, Features, count, extract
from spamd.core.message import DEFAULT_MAX_BYTES, parse
from spamd.errors import ModelError, UnreadableMessage

MODEL_FORMAT = "spamd-model/2"
DEFAULT_FP_BUDGET = 0.001
RETRAIN_HINT = "retrain it with `spamd train --corpus DIR --out PATH`"


def columns(tokens: Sequence[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct columns of a token sequence and how often each occurs (for training)."""
    return _columns([(count(tokens), size, 0)])


Block = tuple[Counted, int, int]  # a channel's counted tokens, its size, its offset


def _hashed(block: Block) -> np.ndarray:
    """The column of each of a channel's distinct tokens, its offset added."""
    counted, size, offset = block
    hashed: np.ndarray = (counted.hashes & (size - 1)) + offset
    return hashed


def _columns(blocks: Sequence[Block]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct columns of some channels' tokens (offsets added) and their counts."""
    hashed = np.concatenate([_hashed(block) for block in blocks])
    weights = np.concatenate([c.counts for c, _, _ in blocks])
    cols, where = np.unique(hashed, return_inverse=True)
    return cols, np.bincount(where, weights=weights, minlength=cols.size)


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
    sha256: str = ""  # of the .joblib pipeline
    weights_sha256: str = ""  # of the .npz weights
    parent: str = ""  # a retrained version: the weights_sha256 of the base it was built on

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


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    idf: np.ndarray  # float32, one per column
    coef: np.ndarray  # float32, one per column

    @property
    def size(self) -> int:
        return int(self.idf.shape[0])


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


class Scorer:
    """A trained model's weights and metadata: raw messages in, spam probabilities out."""

    def __init__(self, channels: Sequence[Channel], intercept: float, metadata: Metadata) -> None:
        self.intercept = float(intercept)
        self.metadata = metadata
        # All channels side by side, as in training: one pass scores a message. Each
        # channel's weights are views into these arrays, so they are held once.
        sizes = [c.size for c in channels]
        self._starts = np.cumsum([0, *sizes[:-1]], dtype=np.int64)
        self._idf = np.concatenate([c.idf for c in channels]) if channels else np.zeros(0)
        self._coef = np.concatenate([c.coef for c in channels]) if channels else np.zeros(0)
        self.channel_weights = tuple(
            Channel(c.name, self._idf[s : s + c.size], self._coef[s : s + c.size])
            for c, s in zip(channels, self._starts, strict=True)
        )

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    @property
    def version(self) -> str:
        return self.metadata.weights_sha256[:12] or "unsaved"

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channel_weights)

    def features(self, raw: bytes) -> Features:
        """The model's input; raises `UnreadableMessage` rather than score nothing."""
        parsed = parse(raw, self.metadata.max_bytes)
        if parsed.unreadable:
            raise UnreadableMessage(parsed.unreadable)
        return extract(parsed, self.channels)

    def score(self, raw: bytes) -> float:
        return self.score_extracted(self.features(raw))

    def score_many(self, raws: Iterable[bytes]) -> np.ndarray:
        return np.array([self.score(raw) for raw in raws], dtype=float)

    def score_features(self, features: Sequence[Features]) -> np.ndarray:
        return np.array([self.score_extracted(f) for f in features], dtype=float)

    def score_extracted(self, features: Features) -> float:
        _, shares = self._shares(self._blocks(features))
        return self._probability(shares)

    def _probability(self, shares: np.ndarray) -> float:
        return _sigmoid(self.intercept + float(shares.sum()))

    def _blocks(self, features: Features) -> list[Block]:
        """Each channel's counted tokens, placed where its weights start."""
        return [
            (features.counted(c.name), c.size, int(start))
            for c, start in zip(self.channel_weights, self._starts, strict=True)
        ]

    def design(self, features: Features) -> tuple[np.ndarray, np.ndarray, float]:
        """The message as the model sees it: its distinct columns, their values
        (sublinear TF-IDF, l2-normed per channel) and the model's logit."""
        cols, x = self._normed(self._blocks(features))
        return cols, x, self.intercept + float(np.dot(x, self._coef[cols]))

    def _normed(self, blocks: Sequence[Block]) -> tuple[np.ndarray, np.ndarray]:
        """The message's distinct columns (all channels side by side) and their
        values: sublinear TF-IDF, l2-normed per channel."""
        cols, counts = _columns(blocks)
        x = (1.0 + np.log(counts)) * self._idf[cols]
        channel = np.searchsorted(self._starts, cols, side="right") - 1
        norms = np.sqrt(np.bincount(channel, weights=x * x, minlength=len(self._starts)))
        norm = norms[channel]
        return cols, np.divide(x, norm, out=np.zeros(cols.size), where=norm > 0)

    def _shares(self, blocks: Sequence[Block]) -> tuple[np.ndarray, np.ndarray]:
        """The message's distinct columns and each one's share of the logit."""
        cols, x = self._normed(blocks)
        return cols, x * self._coef[cols]

    def is_spam(self, score: float) -> bool:
        return score >= self.threshold

    def explain(self, raw: bytes, top: int = 10) -> Explanation:
        """The terms whose weight pushed the score up and down the most."""
        blocks = self._blocks(self.features(raw))
        names: dict[int, list[str]] = {}  # column -> the tokens hashed into it
        for name, block in zip(self.channels, blocks, strict=True):
            for token, col in zip(block[0].tokens, _hashed(block).tolist(), strict=True):
                names.setdefault(col, []).append(f"{name}:{token}")
        cols, shares = self._shares(blocks)
        terms = sorted(
            (
                Term(" | ".join(names[col]), share)
                for col, share in zip(cols.tolist(), shares.tolist(), strict=True)
            ),
            key=lambda t: t.weight,
        )
        score = self._probability(shares)
        return Explanation(
            score=score,
            spam=self.is_spam(score),
            up=tuple(t for t in reversed(terms[-top:]) if t.weight > 0),
            down=tuple(t for t in terms[:top] if t.weight < 0),
        )


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + float(np.exp(-logit)))
    e = float(np.exp(logit))
    return e / (1.0 + e)


def metadata_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def weights_path(model_path: Path) -> Path:
    return model_path.with_suffix(".npz")


def weights_bytes(channels: Sequence[Channel], intercept: float) -> bytes:
    arrays: dict[str, np.ndarray] = {
        "channels": np.array([c.name for c in channels]),
        "intercept": np.array([intercept], dtype=np.float64),
    }
    for c in channels:
        arrays[f"{c.name}.idf"] = c.idf.astype(np.float32)
        arrays[f"{c.name}.coef"] = c.coef.astype(np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def read_checked(path: Path, what: str) -> bytes:
    """A model file's bytes, refused when missing, or when anyone but root or the
    user spamd runs as could have replaced it (group- or world-writable, or owned
    by another user)."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            who = "world" if info.st_mode & stat.S_IWOTH else "group"
            raise ModelError(
                f"refusing a {who}-writable {what}: others could have replaced it; "
                "fix with `chmod go-w`",
                path=path,
            )
        if info.st_uid not in (0, os.geteuid()):
            raise ModelError(
                f"refusing a {what} owned by uid {info.st_uid}, neither root nor the user "
                f"spamd runs as (uid {os.geteuid()}): that user could replace it; "
                "fix with `chown`",
                path=path,
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{what} not found; {RETRAIN_HINT}", path=path) from None
    except OSError as exc:
        raise ModelError(f"cannot read {what} ({exc.strerror})", path=path) from None


def read_metadata(model_path: Path) -> Metadata:
    meta_file = metadata_path(model_path)
    text = read_checked(meta_file, "metadata file beside the model")
    try:
        meta = Metadata.from_json(text.decode("utf-8"), meta_file)
    except UnicodeDecodeError:
        raise ModelError("metadata is not UTF-8", path=meta_file) from None
    if meta.format != MODEL_FORMAT:
        raise ModelError(
            f"format {meta.format!r}, expected {MODEL_FORMAT!r}; {RETRAIN_HINT}", path=model_path
        )
    if meta.feature_version != FEATURE_VERSION:
        raise ModelError(
            f"trained on feature format {meta.feature_version}, this spamd uses "
            f"{FEATURE_VERSION}; {RETRAIN_HINT}",
            path=model_path,
        )
    return meta


def check_digest(blob: bytes, expected: str, path: Path) -> None:
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected:
        raise ModelError(
            f"SHA-256 {digest[:12]}… does not match its metadata ({expected[:12]}…): "
            "the file was changed or damaged; restore it or " + RETRAIN_HINT,
            path=path,
        )


def load(model_path: Path) -> Scorer:
    """The scorer of a model (``X.joblib`` names ``X.npz`` and ``X.json``), checked."""
    if not model_path.exists() and not metadata_path(model_path).exists():
        raise ModelError(f"model file not found; {RETRAIN_HINT}", path=model_path)
    meta = read_metadata(model_path)
    path = weights_path(model_path)
    blob = read_checked(path, "model weights file")
    check_digest(blob, meta.weights_sha256, path)
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            names = [str(n) for n in arrays["channels"]]
            channels = [Channel(n, arrays[f"{n}.idf"], arrays[f"{n}.coef"]) for n in names]
            intercept = float(arrays["intercept"][0])
    except (KeyError, ValueError, OSError, IndexError) as exc:
        raise ModelError(f"not a spamd weights file ({exc}); {RETRAIN_HINT}", path=path) from None
    return Scorer(channels, intercept, meta)
