# Developer shortcuts. The README's two commands (scripts/demo, scripts/test) need no make.
PY ?= .venv/bin/python
CORPORA ?= ../shared/corpora

.PHONY: test lint model bench
test:
	scripts/test

lint:
	$(PY) -m ruff check spamd tests bench
	$(PY) -m ruff format --check spamd tests bench
	$(PY) -m mypy

# The shipped default model, from both public corpora (reproducible: fixed seed).
model:
	$(PY) -m spamd.cli train --corpus $(CORPORA)/spamassassin_public \
		--corpus $(CORPORA)/modern_public --out models/default.joblib

bench:
	$(PY) bench/accuracy.py
	$(PY) bench/ablation.py
