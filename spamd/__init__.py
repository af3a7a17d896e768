"""spamd: an IMAP spam-filtering daemon that learns from the folders users drag mail into."""

__version__ = "0.1.0"
