"""Child processes as process groups that outlive nothing.

Every child is started in its own session (so its whole tree can be
signalled at once) and its group id is recorded on disk under
``<run_dir>/pgroups/``. A worker killed with SIGKILL runs no cleanup; the next
worker's :meth:`ProcessGroups.kill_leftovers` then kills the recorded groups
(style-anchors §6.3). Only our own pids are ever waited on: a blanket
``waitpid(-1)`` would steal other code's exit statuses.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import threading
from typing import Callable, Dict, Mapping, Optional, Sequence

import structlog

log = structlog.get_logger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def proc_stat(pid: int) -> Optional[list]:
    """Fields of ``/proc/<pid>/stat`` after the command name, or ``None``.

    Index 0 is the state, 1 the ppid, 2 the pgrp, 19 the start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].decode().split()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process: it exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def start_time(pid: int) -> Optional[str]:
    stat = proc_stat(pid)
    return stat[19] if stat else None


def group_members(pgid: int) -> list:
    """Pids of live processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[0] != "Z" and int(stat[2]) == pgid:
                members.append(int(entry))
    return members


#: Environment variable every supervised child carries (with its supervisor's tag).
TAG_VARIABLE = "PVCORE_SUPERVISOR"


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read().split(b"\0")
    except OSError:
        return False


class ProcessGroups:
    """Spawns, stops and remembers supervised process groups.

    :param record_dir: where group records live (survives a worker crash).
    :param popen: injected for tests; ``subprocess.Popen`` by default.
    """

    def __init__(self, record_dir: str, popen: Callable = subprocess.Popen):
        self._dir = record_dir
        self._popen = popen
        self._lock = threading.Lock()
        self._records: Dict[int, str] = {}
        # NOTE: a worker killed between fork and writing the record leaves a
        # child no record names; the tag in its environment still does.
        self.tag = hashlib.sha256(os.path.abspath(record_dir).encode()).hexdigest()[:16]

    def _record_path(self, key: str) -> str:
        return os.path.join(self._dir, _SAFE.sub("_", key) + ".pgid")

    def spawn(
        self,
        key: str,
        argv: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        log_path: Optional[str] = None,
    ) -> subprocess.Popen:
        """Start ``argv`` as the leader of a new session; remember it as ``key``.

        stdout and stderr go to ``log_path`` (appended) or /dev/null.
        """
        os.makedirs(self._dir, exist_ok=True)
        env = dict(os.environ if env is None else env)
        env[TAG_VARIABLE] = self.tag
        if log_path:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            out = open(log_path, "ab")
        else:
            out = subprocess.DEVNULL
        try:
            proc = self._popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            if log_path:
                out.close()
        path = self._record_path(key)
        with open(path, "w") as fh:
            fh.write(f"{proc.pid} {start_time(proc.pid) or ''}\n")
        with self._lock:
            self._records[proc.pid] = path
        log.info("process_spawned", key=key, child_pid=proc.pid, argv=list(argv))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM the group, wait up to ``timeout``, then SIGKILL it.

        :return: the leader's exit status (negative for a signal).
        """
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("process_kill", child_pid=proc.pid, after_s=timeout)
                self._signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self.reaped(proc)
        return proc.returncode

    def reaped(self, proc: subprocess.Popen) -> None:
        """The leader has exited: kill what is left of its group, drop the record."""
        self._signal_group(proc.pid, signal.SIGKILL)
        with self._lock:
            path = self._records.pop(proc.pid, None)
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def signal(self, proc: subprocess.Popen, signum: int) -> None:
        """Send ``signum`` to the whole group of ``proc``."""
        self._signal_group(proc.pid, signum)

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_leftovers(self) -> int:
        """Kill the groups a previous (crashed) worker left behind.

        A record is trusted only if the group's leader is gone or still has
        the recorded start time, so a recycled pid is never hit.
        """
        killed = set()
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(self._dir, name)
            try:
                with open(path) as fh:
                    fields = fh.read().split()
                pgid = int(fields[0])
                recorded = fields[1] if len(fields) > 1 else None
            except (OSError, ValueError, IndexError):
                fields, pgid, recorded = None, None, None
            if pgid and pgid not in self._records:
                leader_start = start_time(pgid)
                if leader_start is None or leader_start == recorded:
                    members = group_members(pgid)
                    if members:
                        self._signal_group(pgid, signal.SIGKILL)
                        killed.add(pgid)
                        log.warning("leftover_group_killed", pgid=pgid, members=members)
            if pgid not in self._records:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        self._kill_tagged(killed)
        return len(killed)

    def _kill_tagged(self, killed: set) -> None:
        """Kill processes carrying our tag that no record named (see ``tag``).

        ``killed``: the groups already killed, updated with those killed here.
        """
        needle = f"{TAG_VARIABLE}={self.tag}".encode()
        skip = set(self._records) | killed
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            pid = int(entry)
            stat = proc_stat(pid)
            if stat is None or stat[0] == "Z" or int(stat[2]) in skip or not _environ_has(pid, needle):
                continue
            pgid = int(stat[2])
            if pgid != os.getpgid(0):
                self._signal_group(pgid, signal.SIGKILL)
                skip.add(pgid)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed.add(pgid)
            log.warning("leftover_process_killed", child_pid=pid, pgid=pgid)
