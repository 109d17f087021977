"""pvcore/ctrlsockets.py: each container's own pv-ctrl socket."""
import os
import socket

from pvcore.ctrlsockets import CallerSockets
from pvcore.testing import short_tempdir


class FakeServer:
    def __init__(self):
        self.listening = {}

    def add(self, sock, name):
        self.listening[sock] = name

    def remove(self, sock):
        self.listening.pop(sock)
        sock.close()


def _sockets():
    base = short_tempdir("pvcs")
    return base, CallerSockets(os.path.join(base, "ctrl"), os.path.join(base, "pv-ctrl"))


def test_without_a_server_a_container_gets_the_main_socket():
    base, sockets = _sockets()
    assert sockets.open("app") == os.path.join(base, "pv-ctrl")
    assert not os.path.exists(os.path.join(base, "ctrl"))


def test_a_container_socket_is_served_and_tells_where_a_connection_came_from():
    base, sockets = _sockets()
    server = FakeServer()
    sockets.attach(server.add, server.remove)
    path = sockets.open("app")
    assert path == os.path.join(base, "ctrl", "app")
    (listener, name), = server.listening.items()
    assert name == "app"
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)
        accepted, _ = listener.accept()
        with accepted:
            assert sockets.owner_of(accepted) == "app"
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(os.path.join(base, "elsewhere"))
        assert sockets.owner_of(other) is None
    sockets.close("app")
    assert server.listening == {}
    assert not os.path.exists(path)


def test_a_new_start_replaces_the_old_socket():
    _base, sockets = _sockets()
    server = FakeServer()
    sockets.attach(server.add, server.remove)
    first = sockets.open("app")
    (old,) = server.listening
    assert sockets.open("app") == first
    assert old not in server.listening and old.fileno() == -1
    assert len(server.listening) == 1


def test_a_long_name_gets_a_short_path():
    _base, sockets = _sockets()
    server = FakeServer()
    sockets.attach(server.add, server.remove)
    path = sockets.open("x" * 200)
    assert len(os.fsencode(path)) < 107
    assert os.path.basename(path).startswith("c-")
    assert server.listening and list(server.listening.values()) == ["x" * 200]


def test_close_all_detaches_and_sweep_removes_what_a_killed_worker_left():
    base, sockets = _sockets()
    server = FakeServer()
    sockets.attach(server.add, server.remove)
    live = sockets.open("app")
    stale = os.path.join(base, "ctrl", "gone")
    with socket.socket(socket.AF_UNIX) as left:
        left.bind(stale)
    sockets.sweep()
    assert os.path.exists(live) and not os.path.exists(stale)
    sockets.close_all()
    assert server.listening == {} and not os.path.exists(live)
    assert sockets.open("app") == os.path.join(base, "pv-ctrl")  # detached

