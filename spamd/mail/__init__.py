"""The mail ports (what the daemon needs of a mailbox) and the IMAP adapter."""
