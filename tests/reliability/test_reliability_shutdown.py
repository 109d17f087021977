"""No process of pvcore's outlives it, however early it is stopped (issue 27 point 5).

Before: in about thirty quick start/SIGINT cycles of the demo device (fresh
storage each time, commit delay 0.2 s), the ``pv-xconnect`` daemon was once
left running in its own session after the server had stopped: a SIGINT that
arrived while the daemons service was starting raised ``SystemExit`` after
the spawn, and a service whose start had not returned was never stopped.
Now that service is stopped too, the supervisor kills whatever is still
recorded or tagged when pvcore stops, and refuses to spawn after that.
Here: 4 cycles in ``make test``, 30 in ``make test-long``, each interrupted
at a different point of the boot.
"""
import os
import shutil
import signal
import subprocess

import pytest

from pvcore.testing import GunicornServer, short_tempdir, wait_until
from reliability_helpers import LONG, server_processes

pytestmark = pytest.mark.gunicorn

CYCLES = 30 if LONG else 4


def _processes_of(base):
    """Every live process whose environment names ``base`` (the server's included)."""
    marker = base.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker not in fh.read():
                    continue
            with open(f"/proc/{entry}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def _clean_up(base, proc):
    """Whatever a failed cycle left: its processes, the server, its directory."""
    for pid in _processes_of(base):
        os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(base, ignore_errors=True)


def test_start_and_sigint_in_quick_cycles_leave_no_process():
    for cycle in range(CYCLES):
        base = short_tempdir("pvsig")
        server = GunicornServer(base, {"PVCORE_DEMO": "1", "PVCORE_UPDATE_COMMIT_DELAY": "0.2"})
        log = open(server.log_path, "ab")
        proc = subprocess.Popen([server.python, "-m", "gunicorn", "-c", "python:pvcore.gunicorn_conf"],
                                env=server.env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
        log.close()
        try:
            # From "not even booted" to "demo running", a different point each cycle.
            delay = 0.3 + 2.7 * cycle / max(1, CYCLES - 1)
            try:
                proc.wait(delay)
            except subprocess.TimeoutExpired:
                pass
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) is not None
            left = wait_until(lambda: not _processes_of(base), 5, message="nothing of pvcore left") is not None
            assert left and not server_processes(server)
        finally:
            _clean_up(base, proc)


def _ctrl_sockets(server):
    try:
        return os.listdir(os.path.join(server.run_dir, "ctrl"))
    except FileNotFoundError:
        return []


def test_ctrl_c_to_the_whole_group_stops_every_container_first():
    """A terminal's Ctrl-C reaches the master and the worker at once; the master then sends
    the worker SIGQUIT too. Before, that second signal cut ``worker_exit`` short: the demo's
    containers were left running, their sockets in ``<run>/ctrl``."""
    for cycle in range(3):
        base = short_tempdir("pvcc")
        server = GunicornServer(base, {"PVCORE_DEMO": "1"})
        log = open(server.log_path, "ab")
        proc = subprocess.Popen([server.python, "-m", "gunicorn", "-c", "python:pvcore.gunicorn_conf"],
                                env=server.env, stdout=log, stderr=subprocess.STDOUT, cwd=base,
                                start_new_session=True)
        log.close()
        server.proc = proc
        try:
            server.wait_healthy()
            # <run>/ctrl appears with the first container's start, after /health answers.
            wait_until(lambda: len(_ctrl_sockets(server)) == 3, 20, message="the demo's three containers")
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(60) is not None
            assert wait_until(lambda: not _processes_of(base), 5, message="nothing of pvcore left")
            assert _ctrl_sockets(server) == []
            assert "container_stopped" in server.log_text()
        finally:
            _clean_up(base, proc)
