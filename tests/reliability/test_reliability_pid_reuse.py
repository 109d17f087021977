"""A connection handed on by its container process never becomes the host's.

``SO_PEERCRED`` names the pid that connected. The probe, a non-mgmt
container, has a child connect, ask a mgmt-only route (403), pass the
connection to the test over ``SCM_RIGHTS`` and exit. The test then makes a
host process take that pid (``ns_last_pid``) and restarts the probe (which
makes pvcore identify callers afresh). The handed-on connection must stay
refused — an unknown caller's 500 — and never get the host's 200.
"""
import array
import json
import os
import socket
import subprocess

import pytest

from pvcore.supervisor import pid_alive, proc_stat
from pvcore.testing import short_tempdir, wait_until, write_revision
from reliability_helpers import start_server, stop_server

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"

CHILD = r'''
import array, os, socket, sys
handoff = sys.argv[1]
if os.fork() == 0:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.environ["PVCORE_CTRL_SOCKET"])
    sock.sendall(b"GET /_pvcore/settings HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(head.partition(b"\r\n\r\n")[2]) < length:  # the whole answer: none of it left for the test
        head += sock.recv(65536)
    with socket.socket(socket.AF_UNIX) as out:
        out.connect(handoff)
        out.sendmsg([b"%d " % os.getpid() + head.split(b"\r\n")[0]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                 array.array("i", [sock.fileno()]))])
    os._exit(0)
os.wait()
import time
while True:
    time.sleep(1)
'''


def _request(sock, path):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body


def _take_pid(pid):
    """A host process running as ``pid`` (the test's own child), or ``None``."""
    for _ in range(50):
        with open(NS_LAST_PID, "w") as fh:
            fh.write(str(pid - 1))
        proc = subprocess.Popen(["sleep", "60"])
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


def _probe(roles):
    """A server whose container ``probe`` (``roles``) hands the test a connection and exits.

    :return: ``(server, listener, handed socket, connector pid, status of its request)``.
    """
    base = short_tempdir("pvpid")
    handoff = os.path.join(base, "handoff")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(handoff)
    listener.listen(1)
    write_revision(os.path.join(base, "storage"), {
        "#spec": "pantavisor-service-system@1",
        "probe/run.json": {"#spec": "service-manifest-run@1", "name": "probe", "type": "lxc", "group": "app",
                           "status_goal": "STARTED", "restart_policy": "container", "roles": roles,
                           "exec": ["{python}", "-c", CHILD, handoff]}})
    server = start_server({"PVCORE_CGROUPS": "auto"}, demo=False, base=base)
    try:
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn:
            status_line, ancillary, _, _ = conn.recvmsg(256, socket.CMSG_LEN(4))
            fds = array.array("i")
            fds.frombytes(ancillary[0][2][:4])
    except BaseException:
        listener.close()
        stop_server(server)
        raise
    handed = socket.socket(fileno=fds[0])
    pid, _version, status = status_line.split()[:3]
    pid = int(pid)
    wait_until(lambda: not pid_alive(pid) or proc_stat(pid) is None, 15, message=f"probe child {pid} to end")
    return server, listener, handed, pid, status


def test_a_handed_on_connection_loses_its_connectors_identity_when_the_connector_exits():
    """docs/protocol.md §4.1: the connection belongs to the process that opened it; once
    that process is gone it is unknown, even with nothing else changed on the device
    (before: the mgmt connector's identity stayed cached on the connection, 200)."""
    server, listener, handed, _pid, status = _probe(["mgmt"])
    try:
        assert status == b"200"
        status, body = _request(handed, "/_pvcore/settings")
        assert (status, json.loads(body)) == (500, {"Error": "Internal Error"})
        handed.close()
    finally:
        listener.close()
        stop_server(server)


@pytest.mark.skipif(not os.access(NS_LAST_PID, os.W_OK), reason="needs root to choose the next pid")
def test_a_handed_on_connection_stays_refused_when_its_pid_is_reused_by_the_host():
    server, listener, handed, pid, status = _probe([])
    host = None
    try:
        assert status == b"403"
        host = _take_pid(pid)
        if host is None:
            pytest.skip(f"could not start a process as pid {pid} (busy machine)")
        status, _, body = server.request("PUT", "/containers/probe", json.dumps({"action": "restart"}))
        assert status == 200, body

        status, body = _request(handed, "/_pvcore/settings")
        assert (status, json.loads(body)) == (500, {"Error": "Internal Error"})
        handed.close()
    finally:
        if host is not None:
            host.kill()
            host.wait()
        listener.close()
        stop_server(server)
