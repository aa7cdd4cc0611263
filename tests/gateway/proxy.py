"""A TCP proxy on loopback that a test can cut (a database or Redis outage) and restore, and
that can play a middlebox ending idle connections."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Literal

#: how a middlebox ends a connection idle past its timeout
IdleMode = Literal["close", "reset", "drop"]


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `cut()` drops every connection and refuses new
    ones (accepted, then closed at once: the client sees the server go away), `restore()` ends it.

    With `idle_timeout` (seconds), a connection on which no byte passed either way for that long
    is ended as `idle_mode` says: `close` closes both sides at once (FIN, as Redis's `timeout`
    does); `reset` forgets it and answers the next byte from either side with a RST (AWS NLB,
    most NATs); `drop` forgets it and discards every later byte silently (Azure's load balancer
    by default, an expired conntrack entry). `idle_ended` counts them.

    `black_hole()` makes the far side a server that accepts connections and never answers: every
    open connection and every new one is treated as `drop` does, until `restore()`; connections
    made before `restore()` stay black-holed (their byte streams lost bytes).
    """

    def __init__(self, target_host: str, target_port: int, idle_timeout: float | None = None,
                 idle_mode: IdleMode = "close") -> None:
        self.target = (target_host, target_port)
        self.idle_timeout = idle_timeout
        self.idle_mode = idle_mode
        self.idle_ended = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._up = True
        self._conns: set[socket.socket] = set()
        # per connection (keyed by its client side): its server side and when a byte last passed
        self._pairs: dict[socket.socket, tuple[socket.socket, float]] = {}
        self._forgotten: set[socket.socket] = set()  # client sides of connections ended idle
        self._holding = False
        self._held: set[socket.socket] = set()  # client sides of black-holed connections
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()
        if idle_timeout is not None:
            threading.Thread(target=self._reap, args=(idle_timeout,), daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the timeout bounds the connect; an idle connection stays up
            with self._lock:
                self._conns |= {client, upstream}
                self._pairs[client] = (upstream, time.monotonic())
                if self._holding:
                    self._held.add(client)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, client: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    if client in self._held:
                        continue  # black hole: the byte goes nowhere
                    forgotten = client in self._forgotten
                    if not forgotten and client in self._pairs:
                        self._pairs[client] = (self._pairs[client][0], time.monotonic())
                if forgotten:
                    if self.idle_mode == "reset":
                        # SO_LINGER 0: close() sends a RST instead of a FIN
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        break
                    continue  # drop: the byte goes nowhere
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _reap(self, idle_timeout: float) -> None:
        while True:
            time.sleep(idle_timeout / 10)
            now = time.monotonic()
            with self._lock:
                idle = [(c, u) for c, (u, t) in self._pairs.items()
                        if c not in self._forgotten and now - t > idle_timeout]
                if self.idle_mode != "close":
                    self._forgotten |= {c for c, _ in idle}
                self.idle_ended += len(idle)
            if self.idle_mode == "close":
                for client, upstream in idle:
                    self._drop(client, upstream)

    def _drop(self, *socks: socket.socket) -> None:
        for s in socks:
            if s not in self._forgotten or self.idle_mode != "reset":
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
            with self._lock:
                self._conns.discard(s)
                self._pairs.pop(s, None)
                self._forgotten.discard(s)
                self._held.discard(s)

    def cut(self) -> None:
        self._up = False
        with self._lock:
            conns = list(self._conns)
        self._drop(*conns)

    def restore(self) -> None:
        self._up = True
        self._holding = False

    def black_hole(self) -> None:
        with self._lock:
            self._holding = True
            self._held |= set(self._pairs)

    def close(self) -> None:
        self.cut()
        self._listener.close()
