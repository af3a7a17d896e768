"""The running daemon: the service, the folder watchers, first-start training."""
