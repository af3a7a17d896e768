"""Shared fixtures: the shipped samples, the public corpora, and a small trained model."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamd import corpus
from spamd import model as model_lib
from spamd.features import DEFAULT_CHANNELS

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SHIPPED_MODEL = ROOT / "models" / "default.joblib"
CORPORA = ROOT.parent / "shared" / "corpora"


def message(subject: str, body: str, sender: str = "someone@example.org", **headers: str) -> bytes:
    """A minimal RFC 822 message, for tests that need mail of a certain shape."""
    lines = [f"From: {sender}", f"Subject: {subject}", "Message-ID: <t@example.org>"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not (CORPORA / "spamassassin_public").is_dir():
        pytest.skip(f"public corpora not found at {CORPORA}")
    return CORPORA


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the shipped samples, saved with its metadata."""
    examples = corpus.load_examples([SAMPLES], DEFAULT_CHANNELS, 1 << 18)
    trained = model_lib.train(examples.features, examples.labels, folds=3, sources=["samples"])
    path = tmp_path_factory.mktemp("model") / "small.joblib"
    model_lib.save(trained, path)
    return path
