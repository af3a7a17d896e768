"""One exception tree for spamd.

Errors are split by what the caller should do about them, and each carries the
offending value and where it came from, so the edge (the CLI, the daemon loop)
can print one clear line without a traceback.
"""

from __future__ import annotations


class SpamdError(Exception):
    """Base of every error spamd raises on purpose."""


class ConfigError(SpamdError):
    """The configuration is wrong: fix the file and start again."""

    def __init__(self, message: str, *, source: str = "", key: str = "") -> None:
        where = ":".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.key = key


class InputError(SpamdError):
    """A file or directory given to a command cannot be used."""

    def __init__(self, message: str, *, path: object = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class ModelError(SpamdError):
    """A model file cannot be loaded or trained: it needs retraining or replacing."""

    def __init__(self, message: str, *, path: object = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class CalibrationError(SpamdError):
    """An account's own mail cannot set its threshold (too little of it, a bad budget)."""

    def __init__(self, message: str, *, account: str = "") -> None:
        super().__init__(f"{account}: {message}" if account else message)
        self.account = account


class UnreadableMessage(SpamdError):
    """A message could not be read at all: it must not be scored (as if it were empty)."""

    def __init__(self, error: str) -> None:
        super().__init__(f"unreadable message ({error}); not scored")
        self.error = error  # the name of what went wrong while reading it


class MailboxError(SpamdError):
    """Talking to an IMAP server failed.

    `code` is the response code the server opened its NO or BAD with (RFC 3501
    7.1, RFC 5530), upper-case: ``TRYCREATE`` (the target folder does not exist),
    ``ALREADYEXISTS``, ``NONEXISTENT``, ``OVERQUOTA``, ...; None when it gave
    none, or when the failure was not the server's answer at all.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientMailboxError(MailboxError):
    """The connection broke or the server is busy: reconnect with backoff."""


class AuthError(MailboxError):
    """The server refused the credentials: retrying soon will not help."""


class SetupError(MailboxError):
    """The account is set up in a way that cannot work (a folder missing, a CREATE
    refused, the wrong TLS mode for the port, a host that does not exist):
    retrying soon will not help; `fix` says what to change."""

    def __init__(self, message: str, *, fix: str) -> None:
        super().__init__(f"{message}: {fix}")
        self.fix = fix


class IncompatibleLibrary(SetupError):
    """A library spamd reaches into no longer has what spamd relies on (after an
    upgrade of Python or of the library): spamd must not run on, blind to what it
    would miss. Names the library, its version and what is missing."""

    def __init__(
        self, *, library: str, version: str, missing: str, consequence: str, fix: str
    ) -> None:
        super().__init__(f"{library} {version} has no {missing}: {consequence}", fix=fix)
        self.library = library
        self.version = version
        self.missing = missing
