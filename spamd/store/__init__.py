"""What spamd keeps on disk: the state database and the model versions."""
