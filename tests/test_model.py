"""Model files: round trip, metadata checks and refusals, explanations, the shipped model."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from spamd.core import scorer as scorer_lib
from spamd.errors import ModelError
from spamd.training import model as model_lib
from tests.conftest import SAMPLES, SHIPPED_MODEL


@pytest.fixture
def model_copy(small_model: Path, tmp_path: Path) -> Path:
    for suffix in (".joblib", ".npz", ".json"):
        shutil.copy(small_model.with_suffix(suffix), tmp_path / f"m{suffix}")
    return tmp_path / "m.joblib"


def sample_bytes() -> list[bytes]:
    return [p.read_bytes() for p in sorted(SAMPLES.glob("*/*.eml"))]


def test_round_trip_keeps_scores_and_metadata(small_model: Path) -> None:
    loaded = scorer_lib.load(small_model)
    again = scorer_lib.load(small_model)
    raws = sample_bytes()
    assert list(loaded.score_many(raws)) == list(again.score_many(raws))
    meta = loaded.metadata
    assert (meta.ham, meta.spam) == (6, 6)
    assert meta.sources == ("samples",)
    assert 0.5 <= meta.threshold <= 1.0
    assert meta.versions["scikit-learn"]
    assert len(meta.sha256) == 64
    assert len(meta.weights_sha256) == 64
    assert all(0.0 <= s <= 1.0 for s in loaded.score_many(raws))


def test_refuses_world_writable_file(model_copy: Path) -> None:
    model_copy.chmod(0o666)
    with pytest.raises(ModelError, match="world-writable"):
        model_lib.load(model_copy)


def test_refuses_a_changed_file(model_copy: Path) -> None:
    with model_copy.open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelError, match="does not match its metadata"):
        model_lib.load(model_copy)


def test_scorer_refuses_changed_or_world_writable_weights(model_copy: Path) -> None:
    weights = scorer_lib.weights_path(model_copy)
    weights.chmod(0o666)
    with pytest.raises(ModelError, match="world-writable model weights"):
        scorer_lib.load(model_copy)
    weights.chmod(0o644)
    with weights.open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelError, match=r"\.npz: SHA-256 .* does not match"):
        scorer_lib.load(model_copy)


def test_scorer_matches_the_pipeline(small_model: Path) -> None:
    """The plain-array scorer computes what scikit-learn's pipeline computes."""
    whole = model_lib.load(small_model)
    features = [whole.scorer.features(raw) for raw in sample_bytes()]
    expected = whole.pipeline.predict_proba(features)[:, 1]
    assert whole.scorer.score_features(features) == pytest.approx(expected, abs=1e-5)


def rewrite_metadata(path: Path, **changes: object) -> None:
    meta_path = scorer_lib.metadata_path(path)
    data = json.loads(meta_path.read_text())
    data.update(changes)
    meta_path.write_text(json.dumps(data))


def test_refuses_other_feature_version(model_copy: Path) -> None:
    rewrite_metadata(model_copy, feature_version=999)
    with pytest.raises(ModelError, match=r"feature format 999.*spamd train"):
        model_lib.load(model_copy)


def test_refuses_other_scikit_learn(model_copy: Path) -> None:
    meta = model_lib.load(model_copy).metadata
    rewrite_metadata(model_copy, versions={**meta.versions, "scikit-learn": "0.1.0"})
    with pytest.raises(ModelError, match=r"scikit-learn 0\.1\.0.*spamd train"):
        model_lib.load(model_copy)


def test_refuses_missing_or_broken_metadata(model_copy: Path) -> None:
    meta_path = scorer_lib.metadata_path(model_copy)
    meta_path.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        model_lib.load(model_copy)
    meta_path.write_text('{"threshold": 0.9}')
    with pytest.raises(ModelError, match="lacks"):
        model_lib.load(model_copy)
    meta_path.unlink()
    with pytest.raises(ModelError, match="metadata file beside the model not found"):
        model_lib.load(model_copy)


def test_refuses_a_pickle_that_is_not_a_pipeline(tmp_path: Path, small_model: Path) -> None:
    loaded = model_lib.load(small_model)
    bogus = model_lib.Model(loaded.pipeline.steps[2][1], loaded.scorer)
    path = tmp_path / "bogus.joblib"
    model_lib.save(bogus, path)
    with pytest.raises(ModelError, match="not a spamd pipeline"):
        model_lib.load(path)


def test_training_needs_enough_of_each_class() -> None:
    with pytest.raises(ModelError, match="at least 5 messages of each class"):
        model_lib.train([], [])


def test_explain_names_terms_that_push_each_way(small_model: Path) -> None:
    loaded = scorer_lib.load(small_model)
    spam = (SAMPLES / "spam" / "01-prize.eml").read_bytes()
    explanation = loaded.explain(spam, top=5)
    assert explanation.score == pytest.approx(loaded.score(spam))
    assert explanation.up and all(t.weight > 0 for t in explanation.up)
    assert all(t.term.split(":", 1)[0] in loaded.channels for t in explanation.up)
    weights = [t.weight for t in explanation.up]
    assert weights == sorted(weights, reverse=True)


def test_shipped_model_loads_and_gets_obvious_mail_right() -> None:
    shipped = scorer_lib.load(SHIPPED_MODEL)
    assert model_lib.load(SHIPPED_MODEL).metadata == shipped.metadata
    assert shipped.metadata.ham > 5000 and shipped.metadata.spam > 3000
    shipped_files = [SHIPPED_MODEL, scorer_lib.weights_path(SHIPPED_MODEL)]
    assert sum(p.stat().st_size for p in shipped_files) < 20 * 1024 * 1024
    wrong = {
        path.name
        for path in sorted(SAMPLES.glob("*/*.eml"))
        if shipped.is_spam(shipped.score(path.read_bytes())) != (path.parent.name == "spam")
    }
    # Known miss: the public corpora hold list mail and no business mail, so a
    # supplier's "purchase order" question scores as spam. Rescuing it from Junk
    # is what teaches spamd otherwise (README, "Known limitations").
    assert wrong <= {"04-invoice-question.eml"}


def test_metadata_json_round_trip(small_model: Path) -> None:
    meta = model_lib.load(small_model).metadata
    again = scorer_lib.Metadata.from_json(meta.to_json(), Path("x.json"))
    assert dataclasses.asdict(again) == dataclasses.asdict(meta)
