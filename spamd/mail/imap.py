"""The IMAP adapter: the only module that imports imapclient.

`Connection` offers the few operations spamd needs, in UIDs, and maps every
library, socket and TLS error onto the `spamd.errors` tree:
`TransientMailboxError` (reconnect with backoff), `AuthError` (credentials
refused) and `MailboxError` (the server said NO to one command).
"""

from __future__ import annotations

import ast
import contextlib
import imaplib
import inspect
import platform
import re
import socket
import ssl
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import date
from functools import partial
from typing import Any, TypeVar

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.imapclient import _literal  # imapclient's one way to send an argument as a literal
from imapclient.response_parser import parse_message_list

from spamd.core import layout
from spamd.core.layout import Folder, JunkFolder, Listing, Namespace
from spamd.errors import (
    AuthError,
    IncompatibleLibrary,
    MailboxError,
    SetupError,
    TransientMailboxError,
)
from spamd.mail.ports import Fetched, FolderStatus, IdleEvents
from spamd.ops.config import Account

T = TypeVar("T")
JUNK_FLAG = b"\\Junk"
FETCH_CHUNK = 500  # UIDs per FETCH: far below Dovecot's 64 KB command line
MOVE_CHUNK = 1000
TRASH_FLAG = b"\\Trash"
NOSELECT_FLAG = b"\\Noselect"
# OpenSSL's reasons when the peer answered something that is not TLS at all.
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
GREETING_TIMEOUT = 15.0  # seconds for TCP connect plus the server's "* OK" greeting
_CHANGES = (b"EXISTS", b"RECENT", b"EXPUNGE", b"FETCH")  # IDLE news worth a sync
# Folders that hold no received mail worth learning from (RFC 6154 special uses).
RECEIVED_SKIP = {
    TRASH_FLAG,
    JUNK_FLAG,
    NOSELECT_FLAG,
    b"\\Drafts",
    b"\\Sent",
    b"\\All",
    b"\\Flagged",
}
TRASH_NAMES = {"trash", "deleted items", "deleted messages", "bin"}  # servers without SPECIAL-USE
NOT_RECEIVED_NAMES = {*TRASH_NAMES, "junk", "spam", "drafts", "sent", "sent items", "sent messages"}


@contextlib.contextmanager
def _mapped(what: str, account: str) -> Iterator[None]:
    """Turn library, socket and TLS errors into spamd's error tree."""
    try:
        yield
    except LoginError as exc:  # the line's account names it already (log field, check-config)
        raise AuthError(
            f"login refused: {_said(exc)}; check the account's username and password (or token)"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise TransientMailboxError(
            f"{account}: TLS certificate not trusted ({exc.verify_message}); "
            "set ca_file: to the server's CA"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason not in _NOT_TLS:
            raise TransientMailboxError(f"{account}: TLS failed during {what} ({exc})") from None
        raise SetupError(
            f"{account}: the server did not answer in TLS during {what}: this port speaks "
            "plain IMAP",
            fix="set tls: starttls (port 143), or the port of implicit TLS (993) with tls: ssl",
        ) from None
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN,):
            raise TransientMailboxError(f"{account}: DNS lookup failed for now ({exc})") from None
        raise SetupError(
            f"{account}: the host name does not resolve (DNS: {exc.strerror})",
            fix="check host: in the account's settings",
        ) from None
    except (IMAPClientAbortError, imaplib.IMAP4.abort, OSError, EOFError) as exc:
        raise TransientMailboxError(
            f"{account}: connection lost during {what} ({_text(exc)})"
        ) from None
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        code = response_code(server_said(str(exc)))
        raise MailboxError(f"{account}: {what} failed ({_text(exc)})", code=code) from None


# How the libraries word a server's refusal: imapclient "<command> failed: <text>"
# (a NO, or a BAD, to its own commands); imaplib "<command> command error: BAD
# [b'<text>']" (a BAD to a command imapclient hands straight to imaplib).
_REFUSAL = re.compile(
    r"\S+ (?:failed: (?P<said>.*)|command error: (?:BAD|NO) (?P<data>\[.*\]))", re.S
)
_RESPONSE_CODE = re.compile(r"\[([A-Za-z][A-Za-z0-9.-]*)[ \]]")


def server_said(error: str) -> str:
    """The server's own text in a library's error message ("" when it holds none)."""
    found = _REFUSAL.fullmatch(error)
    if found is None:
        return ""
    if found["said"] is not None:
        return found["said"]
    with contextlib.suppress(ValueError, SyntaxError, TypeError, IndexError, AttributeError):
        said = ast.literal_eval(found["data"])[0]
        return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    return ""


def response_code(said: str) -> str | None:
    """The response code that opens a server's NO or BAD text, upper-case (RFC 3501
    7.1, RFC 5530): "[TRYCREATE] Mailbox doesn't exist: Junk" -> "TRYCREATE"."""
    found = _RESPONSE_CODE.match(said)
    return found[1].upper() if found else None


# -- change notices: the one place that reaches into imaplib's internals --------
#
# imaplib files every untagged response through the private method
# IMAP4._append_untagged(self, typ, dat), and the reply to the next command of that
# kind takes them all: a FETCH of message bodies also takes the FETCH that told of a
# keyword another client set. So the adapter wraps that method, per connection, to
# note the changes as they arrive. Should a Python's imaplib rename the method or
# change its signature, the wrapper would never be called and changes would go
# unseen: `check_change_hook` refuses to connect then (IncompatibleLibrary).

CHANGE_HOOK = "_append_untagged"
CHANGE_HOOK_PARAMETERS = ("self", "typ", "dat")


def check_change_hook(imap_class: type[imaplib.IMAP4] = imaplib.IMAP4) -> None:
    """Raise `IncompatibleLibrary` unless `imap_class` still files untagged responses
    through ``_append_untagged(self, typ, dat)``."""
    hook = getattr(imap_class, CHANGE_HOOK, None)
    try:
        parameters = tuple(inspect.signature(hook).parameters) if callable(hook) else ()
    except (TypeError, ValueError):  # no signature to read
        parameters = ()
    if parameters != CHANGE_HOOK_PARAMETERS:
        raise IncompatibleLibrary(
            library="imaplib",
            version=f"{getattr(imaplib, '__version__', '?')} (Python {platform.python_version()})",
            missing=f"{imap_class.__name__}.{CHANGE_HOOK}({', '.join(CHANGE_HOOK_PARAMETERS)})",
            consequence="spamd would not see the changes the server tells of "
            "(new mail during a sync, keywords other clients set)",
            fix="run spamd on the Python it was tested with (3.11), or upgrade spamd",
        )


def _note_changes(imap: imaplib.IMAP4, told: set[str]) -> None:
    """Collect the kinds of change the server tells of, in `told` (see above). Our
    own FETCHes ask for no flags, so a FETCH with FLAGS is somebody's change."""
    check_change_hook(type(imap))
    append = getattr(imap, CHANGE_HOOK)

    def note(typ: str, dat: Any) -> None:
        head = dat[0] if isinstance(dat, tuple) else dat
        if typ in ("EXISTS", "EXPUNGE") or (typ == "FETCH" and b"FLAGS" in (head or b"")):
            told.add(typ)
        append(typ, dat)

    setattr(imap, CHANGE_HOOK, note)


def _flag(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\r", " ").replace("\n", " ")[:200]


def _said(exc: LoginError) -> str:
    """The server's words: imapclient passes imaplib's bytes on as text like "b'[...] ...'"."""
    text = str(exc)
    if text[:2] in ("b'", 'b"') and len(text) < 1000:
        with contextlib.suppress(ValueError, SyntaxError):
            said = ast.literal_eval(text)
            text = said.decode("utf-8", "replace") if isinstance(said, bytes) else text
    return _text(LoginError(text))


def tls_context(account: Account) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
    if not account.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One logged-in IMAP connection of one account."""

    def __init__(self, client: imapclient.IMAPClient, account: Account) -> None:
        self._client = client
        self.account = account
        self.capabilities = frozenset(c.decode().upper() for c in client.capabilities())
        self.selected: str | None = None
        self._idling = False
        self._told: set[str] = set()  # changes told since the folder was selected
        _note_changes(client._imap, self._told)

    @classmethod
    def open(cls, account: Account, secret: Callable[[], str] | None = None) -> Connection:
        """Connect, secure the connection as configured, and log in."""
        name = account.name
        greeting = min(account.timeout, GREETING_TIMEOUT)
        try:
            with _mapped("connect", name):
                client = imapclient.IMAPClient(
                    account.host,
                    port=account.port,
                    ssl=account.tls == "ssl",
                    ssl_context=tls_context(account) if account.tls == "ssl" else None,
                    timeout=imapclient.SocketTimeout(greeting, account.timeout),
                )
        except TransientMailboxError:
            if account.tls != "ssl" and _answers_tcp(account.host, account.port, greeting):
                raise SetupError(
                    f"{name}: {account.host}:{account.port} accepted the connection but sent "
                    f"no IMAP greeting within {greeting:g} s: the port expects TLS at once",
                    fix="set tls: ssl for this port (993), or use the plain/STARTTLS port (143)",
                ) from None
            raise
        # imapclient turns imaplib's protocol trace on (level 5) and sends it to a
        # logger: every response, message bodies included, is formatted with %r
        # whether that logger is enabled or not: two thirds of a FETCH's CPU, and a
        # trace of bodies and passwords for anyone who enables the logger.
        client._imap.debug = 0
        try:
            with _mapped("STARTTLS", name):
                if account.tls == "starttls":
                    if not client.has_capability("STARTTLS"):
                        raise MailboxError(
                            f"{name}: the server offers no STARTTLS; refusing to log in "
                            "in plain text (set tls: none only on a trusted network)"
                        )
                    client.starttls(tls_context(account))
            _keepalive(client.socket())
            _login(client, account, secret or account.password.reveal)
            return cls(client, account)
        except BaseException:
            _close_quietly(client)
            raise

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with _mapped(what, self.account.name):
            return fn()

    def listing(self) -> Listing:
        """The personal namespace and every folder, with its LIST flags."""
        namespace = self._namespace()
        folders = self._call("LIST", self._client.list_folders)
        return Listing(
            namespace,
            tuple(
                Folder(str(name), frozenset(_flag(f) for f in flags)) for flags, _, name in folders
            ),
        )

    def _namespace(self) -> Namespace:
        if "NAMESPACE" in self.capabilities:
            personal = self._call("NAMESPACE", self._client.namespace).personal
            if personal:
                prefix, separator = personal[0]
                return Namespace(str(prefix), str(separator or "/"))
        # No NAMESPACE: the hierarchy separator from LIST "" "" (RFC 3501 6.3.8).
        found = self._call("LIST", lambda: self._client.list_folders("", ""))
        separator = found[0][1] if found and found[0][1] else b"/"
        return Namespace("", _flag(separator))

    def find_junk(self, listing: Listing | None = None) -> JunkFolder:
        """The Junk folder (see `layout.find_junk`), created when there is none."""
        junk = layout.find_junk(listing or self.listing(), self.account.junk_folder)
        if junk.exists:
            return junk
        try:
            self._call("CREATE", lambda: self._client.create_folder(junk.name))
        except TransientMailboxError:
            raise
        except MailboxError as exc:
            # Another connection of ours may have made it meanwhile: look again. LIST
            # judges, not the answer: Dovecot says so with a code (exc.code ==
            # "ALREADYEXISTS"), but Cyrus only "Mailbox already exists", with none.
            if layout.match_folder(junk.name, self.listing()) == junk.name:
                return JunkFolder(junk.name, f"{junk.how}: made meanwhile", exists=True)
            raise SetupError(
                f"{self.account.name}: the server refused to create the Junk folder "
                f"{junk.name!r} ({exc})",
                fix="set junk_folder: to an existing folder (check-config --connect lists them)",
            ) from None
        return JunkFolder(junk.name, f"{junk.how}: created", exists=True)

    def find_folder(self, wanted: str, listing: Listing | None = None) -> str:
        """A watched folder as the server spells it (see `layout.match_folder`)."""
        listing = listing or self.listing()
        found = layout.match_folder(wanted, listing)
        if found is None:
            raise SetupError(
                f"{self.account.name}: folder {wanted!r} not found on the server",
                fix=f"fix folders: (the server has: {', '.join(listing.names()[:20])})",
            )
        return found

    def select(self, folder: str, *, readonly: bool = False) -> FolderStatus:
        self._stop_idle()
        command = f"{'EXAMINE' if readonly else 'SELECT'} {folder}"
        info = self._call(command, lambda: self._client.select_folder(folder, readonly))
        self._client._imap.untagged_responses.clear()  # imaplib keeps what nobody asked for
        self._told.clear()  # from here on, `reported` collects
        self.selected = folder
        return FolderStatus(
            folder,
            int(info.get(b"UIDVALIDITY", 0)),
            int(info.get(b"UIDNEXT", 0)),
            int(info.get(b"EXISTS", 0)),
        )

    def reported(self, changes: Collection[str]) -> bool:
        """Whether a reply to any command since the folder was selected told of one
        of these changes (EXISTS: mail arrived; EXPUNGE: mail left; FETCH: flags or
        keywords changed). The server tells each change once: one told during a sync
        is not told again by IDLE."""
        return not self._told.isdisjoint(changes)

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid` in the selected folder, ascending."""
        # "N:*" always matches the highest UID, even when it is below N.
        found = self._call("SEARCH", lambda: self._client.search(["UID", f"{last_uid + 1}:*"]))
        return sorted(uid for uid in found if uid > last_uid)

    def uids_since(self, day: date | None) -> list[int]:
        criteria: list[Any] = ["SINCE", day] if day else ["ALL"]
        return sorted(self._call("SEARCH", lambda: self._client.search(criteria)))

    def existing(self, uids: Sequence[int]) -> set[int]:
        """Which of these UIDs are still in the selected folder."""
        found: set[int] = set()
        for chunk in _chunks(uids, FETCH_CHUNK):
            found |= set(
                self._call("SEARCH", partial(self._client.search, ["UID", _uid_set(chunk)]))
            )
        return found

    def search_keywords(self, keywords: Sequence[str]) -> list[int]:
        """UIDs in the selected folder carrying any of these keywords."""
        criteria: list[str] = []
        for i, keyword in enumerate(keywords):
            criteria += (["OR"] if i < len(keywords) - 1 else []) + ["KEYWORD", keyword]
        return sorted(self._call("SEARCH", lambda: self._client.search(criteria)))

    def other_folders(self, skip: Collection[str], *, received_only: bool = False) -> list[str]:
        """Selectable folders other than `skip` and Trash. With `received_only`, also
        without Junk, Drafts, Sent and virtual folders (All Mail, Flagged): where
        mail the user received and kept is."""
        flags_out, names_out = (
            (RECEIVED_SKIP, NOT_RECEIVED_NAMES)
            if received_only
            else ({TRASH_FLAG, NOSELECT_FLAG}, TRASH_NAMES)
        )
        return [
            str(name)
            for flags, _, name in self._call("LIST", self._client.list_folders)
            if name not in skip
            and not flags_out & set(flags)
            and _leaf(str(name)).lower() not in names_out
        ]

    def examine(self, folder: str) -> FolderStatus:
        """Select a folder read-only."""
        return self.select(folder, readonly=True)

    def locate(self, message_id: str, skip: Collection[str]) -> tuple[str, int] | None:
        """Some folder (not in `skip`, not Trash) holding this Message-ID, and its UID there.

        Leaves a folder selected read-only: select the working folder again after.
        """
        for name in self.other_folders(skip):
            self.examine(name)
            found = self.search_header("Message-ID", message_id)
            if found:
                return name, found[0]
        return None

    def search_header(self, name: str, value: str) -> list[int]:
        """UIDs in the selected folder whose header `name` contains `value`.

        The value comes from mail, so it goes as a literal, never as an atom or a
        quoted string: a literal holds parentheses, braces, quotes and control
        characters as they are. Non-ASCII goes as UTF-8 with ``CHARSET UTF-8``
        (RFC 3501 6.4.4). A value the server refuses (BAD, ``NO [BADCHARSET]``)
        raises `MailboxError`; the connection stays usable.
        """
        data = value.encode("utf-8", "surrogatepass")  # never raises; the server judges
        args = [] if data.isascii() else [b"CHARSET", b"UTF-8"]
        args += [b"HEADER", name.encode("ascii"), _literal(data)]
        found = self._call("SEARCH", lambda: self._client._raw_command_untagged(b"SEARCH", args))
        return sorted(parse_message_list(found))

    def search_size(self, size: int) -> list[int]:
        """UIDs in the selected folder of messages of exactly `size` bytes."""
        criteria = ["LARGER", size - 1, "SMALLER", size + 1]
        return sorted(self._call("SEARCH", lambda: self._client.search(criteria)))

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """The size in bytes (RFC822.SIZE) of each of these UIDs still in the folder."""
        return {uid: int(item[b"RFC822.SIZE"]) for uid, item in self._fetched(uids, "RFC822.SIZE")}

    def fetch(self, uids: Sequence[int], max_bytes: int) -> list[Fetched]:
        """The first `max_bytes` of each message (never marking it \\Seen)."""
        return [
            Fetched(uid, bytes(item.get(b"BODY[]<0>", item.get(b"BODY[]", b"")) or b""))
            for uid, item in self._fetched(uids, f"BODY.PEEK[]<0.{max_bytes}>")
        ]

    def fetch_message_ids(self, uids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for uid, item in self._fetched(uids, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"):
            header = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER")), b"")
            _, _, value = bytes(header or b"").decode("ascii", "replace").partition(":")
            out[uid] = value.strip()
        return out

    def _fetched(self, uids: Sequence[int], item: str) -> Iterator[tuple[int, dict[bytes, Any]]]:
        """(UID, its data) for each of these UIDs still in the folder, in their order:
        one FETCH of `item` per chunk of UIDs."""
        for chunk in _chunks(uids, FETCH_CHUNK):
            data = self._call("FETCH", partial(self._client.fetch, chunk, [item]))
            yield from ((uid, data[uid]) for uid in chunk if uid in data)  # else: expunged

    @property
    def move_method(self) -> layout.MoveMethod:
        return layout.move_method(self.capabilities)

    def move(self, uids: Sequence[int], folder: str) -> None:
        """UID MOVE (RFC 6851): atomic on the server. See `copy` and `delete` for the fallback."""
        for chunk in _chunks(uids, MOVE_CHUNK):
            self._call("MOVE", partial(self._client.move, chunk, folder))

    def copy(self, uids: Sequence[int], folder: str) -> None:
        self._call("COPY", lambda: self._client.copy(list(uids), folder))

    def delete(self, uids: Sequence[int]) -> None:
        """Expunge exactly these UIDs (UIDPLUS), never other \\Deleted mail."""
        if "UIDPLUS" not in self.capabilities:
            raise MailboxError(
                f"{self.account.name}: the server has neither MOVE nor UIDPLUS; "
                "spamd will not EXPUNGE other people's deleted mail: use mode: flag"
            )
        self._add_flags(uids, [imapclient.DELETED])
        self._call("UID EXPUNGE", lambda: self._client.uid_expunge(list(uids)))

    def add_keywords(self, uids: Sequence[int], keywords: Sequence[str]) -> None:
        if uids:
            self._add_flags(uids, keywords)

    def _add_flags(self, uids: Sequence[int], flags: Sequence[str | bytes]) -> None:
        # Silent: the server tells of our own change neither now nor as news later.
        self._call("STORE", lambda: self._client.add_flags(list(uids), list(flags), silent=True))

    def append(self, folder: str, raw: bytes, flags: Sequence[str] = ()) -> None:
        self._call("APPEND", lambda: self._client.append(folder, raw, flags=list(flags)))

    def noop(self) -> None:
        self._stop_idle()
        self._call("NOOP", self._client.noop)

    @property
    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities

    def idle_wait(self, timeout: float) -> IdleEvents:
        """IDLE on the selected folder for up to `timeout` seconds; returns early on news."""
        if not self._idling:
            # What was told before is the caller's (`reported`, checked after a sync);
            # news read while IDLE starts, before "+ idling", idle_check never returns.
            self._told.clear()
            self._call("IDLE", self._client.idle)
            self._idling = True
            if bool(self._told) or self._call("IDLE", self._told_with_idle):
                return IdleEvents(changed=True)
        started = time.monotonic()
        responses = self._call("IDLE", lambda: self._client.idle_check(timeout=timeout))
        if not responses and time.monotonic() - started < timeout / 2:
            # imapclient returns [] early when the server closed the connection:
            # leaving IDLE raises then, and the caller reconnects.
            self._stop_idle()
        news = any(len(r) > 1 and r[1] in _CHANGES for r in responses)
        return IdleEvents(changed=news)

    def _told_with_idle(self) -> bool:
        """Whether news came with the reply to IDLE. Mail that arrived since the last
        command is told right after "+ idling", in the same read: it then waits in the
        client's read buffer, where `idle_check` (which polls the socket) never looks,
        and the folder would IDLE past it until the next change or refresh."""
        sock = self._client.socket()
        sock.setblocking(False)  # look at what is buffered (or readable now); never wait
        try:
            return bool(self._client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            self._client._set_read_timeout()  # blocking again, with the configured timeout

    def _stop_idle(self) -> None:
        if self._idling:
            self._idling = False
            self._call("DONE", self._client.idle_done)

    def logout(self) -> None:
        """Leave IDLE and log out; never raises (the connection may be gone)."""
        try:
            self._stop_idle()
            self._call("LOGOUT", self._client.logout)
        except MailboxError:
            _close_quietly(self._client)

    def close(self) -> None:
        _close_quietly(self._client)


def _login(client: imapclient.IMAPClient, account: Account, secret: Callable[[], str]) -> None:
    """LOGIN with a password (AUTHENTICATE PLAIN when the name or password is not
    ASCII), or SASL XOAUTH2/OAUTHBEARER with an access token. A token is asked for
    at every connection; one the server rejects is asked for once more (a token
    helper may have handed out a stale one) before giving up."""
    if account.auth == "password":
        with _mapped("login", account.name):
            password = secret()
            if (account.username + password).isascii():
                client.login(account.username, password)
            else:  # LOGIN is ASCII only; SASL PLAIN carries UTF-8 (RFC 4616, RFC 6855 s. 5)
                client.plain_login(account.username, password)
        return
    for attempt in (1, 2):
        try:
            with _mapped("login", account.name):
                if account.auth == "xoauth2":
                    client.oauth2_login(account.username, secret())
                else:
                    client.oauthbearer_login(account.username, secret())
            return
        except AuthError:
            if attempt == 2:
                raise


def _close_quietly(client: imapclient.IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()


def _answers_tcp(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to host:port opens (then closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _keepalive(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def _leaf(folder: str) -> str:
    return folder.replace("/", ".").rpartition(".")[2]


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(u) for u in uids)
