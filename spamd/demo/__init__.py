"""`spamd demo`: a private Dovecot on loopback with the sample mail."""
