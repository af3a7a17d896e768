"""Running as a service: configuration, logs, metrics, the admin page, systemd."""
