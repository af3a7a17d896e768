"""Training and evaluating models: scikit-learn lives here and nowhere the daemon loads."""
