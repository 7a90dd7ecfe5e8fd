"""Other client addresses for real clients (failed-login throttling is per
client IP): ``SourceProxy`` relays to the registry from a chosen 127/8
address, ``next_source_ip`` hands out a fresh one."""

from __future__ import annotations

import itertools
import socket
import sys
import threading

from support.processes import COMMAND_TIMEOUT


class SourceProxy:
    """A TCP relay on 127.0.0.1:PORT whose connections to the registry come from ``source_ip``.

    berth throttles failed logins per client address (10 in 60 s -> 429 for
    every request from that address).  Every loopback connection comes from
    127.0.0.1, whatever 127/8 address it goes to, and real clients cannot
    choose their source address; so tests that provoke authentication failures
    send their clients through one of these relays, which makes berth see
    another address and keeps 127.0.0.1 (all the other tests) unthrottled.
    The relay is byte-transparent: the Host header is the relay's address,
    so berth's Bearer realm points back at the relay as well.
    """

    def __init__(self, target: tuple[str, int], source_ip: str):
        self.target = target
        self.source_ip = source_ip
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy-{source_ip}", daemon=True)
        self._thread.start()

    def _track(self, sock: socket.socket):
        with self._lock:
            self._sockets.add(sock)

    def _accept_loop(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        client.settimeout(None)
        self._track(client)
        try:
            upstream = socket.create_connection(self.target, timeout=10, source_address=(self.source_ip, 0))
        except OSError as exc:
            print(f"proxy {self.source_ip}: cannot connect to {self.target}: {exc}", file=sys.stderr)
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join(timeout=COMMAND_TIMEOUT)
        for sock in (client, upstream):
            sock.close()
            with self._lock:
                self._sockets.discard(sock)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() on Linux
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)


# 127.0.0.1 is the default address of every other test; hand out others.
_source_ips = (f"127.0.{b}.{c}" for b in itertools.count(10) for c in range(2, 255))


def next_source_ip() -> str:
    return next(_source_ips)
