"""The pure core: reading mail, features, scoring, and the decisions made from scores.

Nothing here does I/O or imports an adapter (tests/test_architecture.py)."""
