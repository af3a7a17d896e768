"""A loopback TCP proxy between spamd and Dovecot that tests can break on purpose.

Faults are armed on a pattern of what the client sends (an IMAP command such as
``UID MOVE``) and fire when a chunk from the client matches:

* ``cut``: close both sides before the command reaches the server;
* ``cut_after``: forward the command, then close both sides a moment later, so
  the server acts but the client never hears the answer (the nasty case);
* ``stall``: hold the command (and everything after it) for a while;
* ``refuse``: answer ``<tag> NO [OVERQUOTA] ...`` in the server's place.

``strip`` removes a byte string from everything the server sends (say, the
``STARTTLS`` capability: a downgrade attack). It also records every command
line clients sent, so a test can check what
spamd asked for (for example, that it never fetched a whole mailbox).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass


@dataclass
class Fault:
    pattern: re.Pattern[bytes]
    action: str  # cut | cut_after | stall | refuse
    times: int
    seconds: float


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.injected: Counter[str] = Counter()  # "cut UID MOVE" -> times
        self.commands: list[bytes] = []
        self._closed = threading.Event()
        self.strip = b""
        threading.Thread(target=self._accept, daemon=True).start()

    # -- control ------------------------------------------------------------------------

    def arm(self, pattern: str, action: str, *, times: int = 1, seconds: float = 0.2) -> None:
        with self._lock:
            self._faults.append(Fault(re.compile(pattern.encode(), re.I), action, times, seconds))

    def disarm(self) -> None:
        with self._lock:
            self._faults.clear()

    def armed(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def cut_all(self) -> int:
        """Close every open connection; returns how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)
        self.injected["cut all"] += 1
        return len(pairs)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.cut_all()

    # -- plumbing -----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump_up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(server, client), daemon=True).start()

    def _take(self, chunk: bytes) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.pattern.search(chunk):
                    fault.times -= 1
                    self.injected[f"{fault.action} {fault.pattern.pattern.decode()}"] += 1
                    return fault
        return None

    def _pump_up(self, client: socket.socket, server: socket.socket) -> None:
        """Client -> server, where the faults happen."""
        while True:
            try:
                chunk = client.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            self.commands.extend(line for line in chunk.split(b"\r\n")[:1] if line)
            fault = self._take(chunk)
            try:
                if fault is None:
                    server.sendall(chunk)
                elif fault.action == "cut":
                    break
                elif fault.action == "cut_after":
                    server.sendall(chunk)
                    time.sleep(fault.seconds)
                    break
                elif fault.action == "stall":
                    time.sleep(fault.seconds)
                    server.sendall(chunk)
                elif fault.action == "refuse":
                    tag = chunk.split(b" ", 1)[0]
                    client.sendall(tag + b" NO [OVERQUOTA] Quota exceeded (injected)\r\n")
            except OSError:
                break
        with self._lock:
            if (client, server) in self._pairs:
                self._pairs.remove((client, server))
        _close(client, server)

    def _pump_down(self, source: socket.socket, sink: socket.socket) -> None:
        """Server -> client."""
        while True:
            try:
                chunk = source.recv(65536)
                if not chunk:
                    break
                sink.sendall(chunk.replace(self.strip, b"") if self.strip else chunk)
            except OSError:
                break
        _close(source, sink)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
