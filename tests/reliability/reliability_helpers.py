"""Shared helpers of the reliability suite: a demo gunicorn, process scans, on-disk invariants."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import time
from typing import Dict, Iterable, List, Optional, Set

from hypothesis import HealthCheck, settings

from pvcore.supervisor import proc_stat
from pvcore.supervisor import process_running as alive
from pvcore.testing import raw_request, GunicornServer, short_tempdir, wait_until

#: ``PVCORE_TEST_LONG=1`` (``make test-long``): more seeds, more examples, longer load.
LONG = os.environ.get("PVCORE_TEST_LONG", "") not in ("", "0")
_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile("pvcore-quick", max_examples=50, deadline=None, suppress_health_check=_CHECKS)
settings.register_profile("pvcore-long", max_examples=1000, deadline=None, suppress_health_check=_CHECKS)
#: The Hypothesis settings of this suite (a profile, not loaded globally: other suites keep theirs).
HYPOTHESIS = settings.get_profile("pvcore-long" if LONG else "pvcore-quick")

SHA = re.compile(r"[0-9a-f]{64}\Z")
#: The statuses docs/protocol.md documents (§3–§7); a 500 is only allowed with the messages below.
DOCUMENTED = {200, 400, 403, 404, 409, 422, 501, 503, 507}
#: The HTTP layer's own refusals (docs/protocol.md §1, §3.3, §12.12), always with libevent's framework body.
FRAMEWORK = {400, 414, 417, 431, 501}
FRAMEWORK_BODY = b'{"Error": "Unsupported protocol"}'
DOCUMENTED_500 = {
    "State not loaded yet", "Signal not expected from this platform", "Internal Error",
    "Internal error, unknown caller",
}
CLIENT = "pv-example-unix-client"
SERVER = "pv-example-unix-server"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start_server(env: Optional[Dict[str, str]] = None, demo: bool = True, base: Optional[str] = None) -> GunicornServer:
    """A real gunicorn (demo device by default); stop it with :func:`stop_server`."""
    values = {"PVCORE_DEMO": "1"} if demo else {}
    values.update(env or {})
    server = GunicornServer(base or short_tempdir("pvrel"), values)
    return server.start(60)


def stop_server(server: GunicornServer, remove: bool = True) -> None:
    try:
        server.stop()
    finally:
        if remove:
            shutil.rmtree(server.base, ignore_errors=True)


def ppid(pid: int) -> Optional[int]:
    stat = proc_stat(pid)
    return int(stat[1]) if stat else None


def server_processes(server: GunicornServer) -> Dict[int, str]:
    """``{pid: kind}`` of live container and daemon processes started for ``server``.

    Other sessions run demo devices on this machine too: a process belongs to
    ``server`` when its environment names the server's base directory.
    """
    found = {}
    marker = server.base.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if marker not in environ or not alive(pid):
            continue
        if b"pvcore_demo.container" in cmdline:
            found[pid] = "container"
        elif b"xconnect_daemon" in cmdline:
            found[pid] = "daemon"
    return found


def get_json(server: GunicornServer, path: str, timeout: float = 10.0):
    conn = server.client(timeout=timeout)
    try:
        status, _, data = conn.call("GET", path)
    finally:
        conn.close()
    assert status == 200, (path, status, data)
    return json.loads(data)


def containers(server: GunicornServer) -> Dict[str, dict]:
    return {e["name"]: e for e in get_json(server, "/containers")}


def all_ready(server: GunicornServer) -> Optional[Dict[str, dict]]:
    try:
        listing = containers(server)
    except (OSError, AssertionError):
        return None
    return listing if listing and all(e["status"] == e["status_goal"] for e in listing.values()) else None


def daemon_pid(server: GunicornServer, name: str = "pv-xconnect") -> int:
    for entry in get_json(server, "/daemons"):
        if entry["name"] == name:
            return entry["pid"]
    raise AssertionError(f"no daemon {name}")


def kill_worker(server: GunicornServer) -> int:
    """``kill -9`` gunicorn's worker; wait for the replacement to be healthy. Returns the dead pid."""
    worker = server.worker_pid()
    assert worker
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: server.worker_pid() not in (None, worker), 30, message="a new worker")
    server.wait_healthy(60)
    return worker


def committed_containers(server: GunicornServer) -> Set[str]:
    state = get_json(server, "/steps/current")
    return {v["name"] for k, v in state.items() if k.endswith("/run.json") and isinstance(v, dict) and "name" in v}


def assert_recovered(server: GunicornServer, dead: int, timeout: float = 30.0) -> Dict[str, dict]:
    """No process of the dead worker survives; the device is back at its committed containers."""
    worker = server.worker_pid()

    def only_new_ones():
        procs = server_processes(server)
        strays = {pid: kind for pid, kind in procs.items() if ppid(pid) != worker}
        return (not strays) and procs

    procs = wait_until(only_new_ones, timeout, message=f"only processes of worker {worker} (dead: {dead})")
    listing = wait_until(lambda: all_ready(server), timeout, message="containers back at their goal")
    assert set(listing) == committed_containers(server)
    # the new worker's view names exactly the processes that run
    xpid = wait_until(lambda: (p := daemon_pid(server)) > 0 and alive(p) and p, timeout, message="pv-xconnect up")
    assert ppid(xpid) == worker
    graph = get_json(server, "/xconnect-graph")
    for link in graph:
        for key in ("consumer_pid", "provider_pid"):
            if link[key] > 0:
                assert ppid(link[key]) == worker, (link, procs)
    kinds = sorted(server_processes(server).values())
    assert kinds.count("daemon") == 1 and kinds.count("container") == len(listing), kinds
    return listing


def assert_storage_consistent(storage: str, sent_meta: Dict[str, Dict[str, Set[bytes]]]) -> None:
    """Nothing torn at a final path (see the module doc of test_reliability_crash)."""
    objects = os.path.join(storage, "objects")
    for name in os.listdir(objects):
        if SHA.match(name):
            with open(os.path.join(objects, name), "rb") as fh:
                assert sha256(fh.read()) == name, f"torn object {name}"
    trails = os.path.join(storage, "trails")
    revs = [os.path.join(trails, n) for n in os.listdir(trails) if not n.startswith(".") and n != "locals"]
    local_root = os.path.join(trails, "locals")
    if os.path.isdir(local_root):
        revs += [os.path.join(local_root, n) for n in os.listdir(local_root) if not n.startswith(".")]
    for rev in revs:
        path = os.path.join(rev, ".pvr", "json")
        if os.path.exists(path):
            with open(path, "rb") as fh:
                json.loads(fh.read())  # raises on a torn state JSON
        progress = os.path.join(rev, ".pv", "progress")
        if os.path.exists(progress):
            with open(progress, "rb") as fh:
                json.loads(fh.read())
    for kind in ("meta", "devmeta"):
        directory = os.path.join(storage, "cache", kind)
        if not os.path.isdir(directory):
            continue
        order = os.path.join(storage, "cache", kind + ".order")
        if os.path.exists(order):
            with open(order, "rb") as fh:
                assert isinstance(json.loads(fh.read()), list)
        sent = sent_meta.get(kind, {})
        for key in os.listdir(directory):
            with open(os.path.join(directory, key), "rb") as fh:
                value = fh.read()
            if key in sent:
                assert value in sent[key], f"{kind}/{key} holds {value[:80]!r}, never sent"
            elif kind == "meta":
                raise AssertionError(f"user meta {key} was never sent")


def temp_leftovers(storage: str, pid: int, settle: float = 5.0) -> List[str]:
    """Temp/staging files of worker ``pid`` still on disk.

    Objects and trails name their temp files after the writing pid. Meta temp
    files (``atomic_write``) carry no pid and the live worker writes device
    meta all the time, so a meta temp file counts as a leftover only if it is
    still there ``settle`` seconds later (an atomic write takes milliseconds).
    """
    found = []
    for sub in ("objects", "trails", "trails/locals"):
        try:
            names = os.listdir(os.path.join(storage, sub))
        except OSError:
            continue
        found += [os.path.join(sub, n) for n in names if n.endswith(".tmp") and f"{pid}-" in n]
    meta = {}
    for sub in ("pvcore/pv_metadata/meta.staging", "pvcore/pv_metadata/devmeta.staging", "pvcore/pv_metadata",
                "pvcore/pv_commands", "cache"):
        try:
            meta[sub] = {n for n in os.listdir(os.path.join(storage, sub)) if n.endswith(".tmp")}
        except OSError:
            pass
    deadline = time.monotonic() + settle
    while any(meta.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
        for sub in meta:
            try:
                meta[sub] &= set(os.listdir(os.path.join(storage, sub)))
            except OSError:
                meta[sub] = set()
    found += [os.path.join(sub, n) for sub, names in meta.items() for n in names]
    return found


def raw_exchange(path: str, data: bytes, timeout: float = 10.0, half_close: bool = False) -> bytes:
    return raw_request(path, data, half_close=half_close, timeout=timeout)


def parse_response(raw: bytes):
    """``(status, headers dict lowercased, body)`` of the first response in ``raw``."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


def assert_documented(status: int, body: bytes, where: str = "") -> None:
    """A documented status with a JSON ``{"Error": ...}`` body for errors, never an unhandled 500."""
    where = where[:200]
    if status == 200:
        return
    assert b"Traceback" not in body, (where, body)
    if body == FRAMEWORK_BODY:
        assert status in FRAMEWORK, (where, status)
        return
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"{where}: {status} with a non-JSON body {body[:200]!r}") from None
    assert isinstance(doc, dict) and isinstance(doc.get("Error"), str), (where, status, body)
    if status == 500:
        assert doc["Error"] in DOCUMENTED_500, (where, status, body)
    else:
        assert status in DOCUMENTED, (where, status, body)


def files_under(base: str, skip: Iterable[str] = ()) -> Set[str]:
    result = set()
    skip = tuple(skip)
    for root, dirs, files in os.walk(base):
        if skip and root.startswith(skip):
            dirs[:] = []
            continue
        for name in files:
            result.add(os.path.join(root, name))
    return result


def wait_tmp(directory: str, pid: int, timeout: float = 10.0) -> List[str]:
    def found():
        try:
            return [n for n in os.listdir(directory) if n.endswith(".tmp") and f"{pid}-" in n]
        except OSError:
            return []
    return wait_until(found, timeout, 0.01, message=f"a temp file of {pid} in {directory}")


def monotonic_ms() -> float:
    return time.monotonic() * 1000
