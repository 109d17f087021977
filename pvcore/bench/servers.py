"""Starting gunicorn for a measurement and reading its worker's memory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict, Optional

from pvcore.testing import UnixHTTPConnection, child_pids, short_tempdir


def status_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of ``/proc/<pid>/status``, in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Reset VmHWM so the next reading is the peak from now on (Linux ≥ 4.0)."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


class Server:
    """gunicorn with pvcore (``bare=False``) or the bare baseline app."""

    def __init__(self, bare: bool = False, env: Optional[Dict[str, str]] = None, base: Optional[str] = None):
        self.base = base or short_tempdir("pvb")
        self.socket = os.path.join(self.base, "run", "pv-ctrl")
        self.env = dict(os.environ, PVCORE_STORAGE_DIR=os.path.join(self.base, "storage"),
                        PVCORE_RUN_DIR=os.path.join(self.base, "run"), PVCORE_SOCKET=self.socket,
                        PVCORE_LOG_FORMAT="json", PVCORE_DEMO="1")
        if bare:
            self.env["PVCORE_WSGI_APP"] = "pvcore.bench.bare:app"
        self.env.update(env or {})
        self.proc: Optional[subprocess.Popen] = None
        self.boot_seconds: Optional[float] = None

    def start(self, probe: str = "/buildinfo", timeout: float = 60.0) -> "Server":
        """Launch and wait for the first answered request to ``probe``; records the boot time."""
        os.makedirs(os.path.join(self.base, "run"), exist_ok=True)
        log = open(os.path.join(self.base, "gunicorn.log"), "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:pvcore.gunicorn_conf"],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.base)
        log.close()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: see {self.base}/gunicorn.log")
            try:
                conn = UnixHTTPConnection(self.socket, timeout=2)
                status = conn.call("GET", probe)[0]
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("gunicorn did not answer in time")
            time.sleep(0.005)
        self.boot_seconds = time.monotonic() - t0
        return self

    def worker_pid(self) -> int:
        return child_pids(self.proc.pid)[0]

    def get(self, path: str) -> bytes:
        conn = UnixHTTPConnection(self.socket)
        status, _, body = conn.call("GET", path)
        conn.close()
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return body

    def stop(self) -> None:
        """SIGTERM gunicorn, then end whatever its worker left running.

        A figure may leave the worker unable to stop its children in time (the
        hostile-callers figure, say): the master then kills it, and nothing
        would start again on this storage to clean up. So do what the next
        worker would do (docs/architecture.md §6.1).
        """
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        from pvcore.supervisor import ProcessGroups

        ProcessGroups(os.path.join(self.base, "run", "pgroups")).kill_leftovers()
