"""The poll loop's draining close is bounded (pvcore/linger.py): a peer that
keeps sending gains nothing past its budget or ``LINGER_MAX``."""
import selectors
import socket
import threading
import time

import pytest

from pvcore import linger
from pvcore.linger import LingeringClose


class Loop(LingeringClose):
    """Just enough of the worker: a poller, and murder_pending's deadline check."""

    def __init__(self, budget: int):
        super().__init__()
        self.poller = selectors.DefaultSelector()
        self.budget = budget

    def linger_budget(self, conn) -> int:
        return self.budget

    def run(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self._lingering and time.monotonic() < end:
            for key, _ in self.poller.select(0.02):
                key.data(key.fileobj)
            now = time.monotonic()
            for conn in [c for c, deadline in self._lingering.items() if deadline <= now]:
                self._end_linger(conn)


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.closed_at = None

    def close(self, graceful=False):
        self.closed_at = time.monotonic()
        self.sock.close()


def sender(sock, chunk: int, pause: float, sent: list) -> threading.Thread:
    def run():
        try:
            while True:
                sent[0] += sock.send(b"x" * chunk)
                time.sleep(pause)
        except OSError:  # the server closed: EPIPE or ECONNRESET
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    client.close()
    server.close()


def test_a_peer_that_never_pauses_is_cut_after_linger_max(pair, monkeypatch):
    monkeypatch.setattr(linger, "LINGER", 0.3)
    monkeypatch.setattr(linger, "LINGER_MAX", 0.6)
    server, client = pair
    loop, conn = Loop(budget=1 << 40), Conn(server)
    started = time.monotonic()
    loop._linger(conn)
    sent = [0]
    thread = sender(client, 4096, 0.01, sent)
    loop.run(5)
    assert conn.closed_at is not None and 0.5 <= conn.closed_at - started < 1.5
    thread.join(5)
    assert not thread.is_alive()


def test_the_drain_ends_at_its_budget(pair, monkeypatch):
    monkeypatch.setattr(linger, "LINGER_MAX", 10.0)
    server, client = pair
    loop, conn = Loop(budget=64 * 1024), Conn(server)
    started = time.monotonic()
    loop._linger(conn)
    sent = [0]
    sender(client, 16 * 1024, 0.001, sent)
    loop.run(5)
    assert conn.closed_at is not None and conn.closed_at - started < 2


def test_a_peer_that_pauses_is_closed_after_linger(pair, monkeypatch):
    monkeypatch.setattr(linger, "LINGER", 0.3)
    server, client = pair
    loop, conn = Loop(budget=1 << 40), Conn(server)
    loop._linger(conn)
    client.sendall(b"some of the body")
    started = time.monotonic()
    loop.run(5)
    assert conn.closed_at is not None and conn.closed_at - started < 1.5
