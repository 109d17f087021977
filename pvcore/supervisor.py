"""Child processes as process groups that outlive nothing.

Every child is started in its own session (so its whole tree can be
signalled at once) and its group id is recorded on disk under
``<run_dir>/pgroups/``. A worker killed with SIGKILL runs no cleanup; the next
worker's :meth:`ProcessGroups.kill_leftovers` then kills the recorded groups.
Only our own pids are ever waited on: a blanket ``waitpid(-1)`` would steal
other code's exit statuses.

A child spawned with ``contain=<name>`` (a container) may be hostile: a
process group is left with ``setsid()``. Such a child starts in a cgroup of
its own (:mod:`pvcore.cgroups`) when pvcore can create cgroups; stopping or
reaping it kills the whole cgroup. Without cgroups it becomes a child
subreaper (``PR_SET_CHILD_SUBREAPER``), so descendants that double-fork are
re-parented to it instead of init and stay in its process tree, where
identification and stopping find them (docs/architecture.md, "Callers").
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import signal
import subprocess
import threading
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import structlog

from pvcore.cgroups import CgroupRef, CgroupTree

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


def descendants(pid: int) -> List[Tuple[int, int, str]]:
    """``(pid, pgid, start time)`` of every live descendant of ``pid``."""
    children: Dict[int, List[Tuple[int, int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[0] != "Z":
                children.setdefault(int(stat[1]), []).append((int(entry), int(stat[2]), stat[19]))
    found, frontier = [], [pid]
    while frontier:
        for child in children.get(frontier.pop(), ()):
            found.append(child)
            frontier.append(child[0])
    return found


#: Environment variable every supervised child carries (with its supervisor's tag).
TAG_VARIABLE = "PVCORE_SUPERVISOR"
#: Environment variable of a contained child (``spawn(contain=...)``): its name.
#: A process carrying it is never taken for the host (pvcore.caller).
CONTAINED_VARIABLE = "PVCORE_CONTAINED"
_PR_SET_CHILD_SUBREAPER = 36
_libc = None


def _enter_cgroup(procs_file: str) -> Callable[[], None]:
    """A ``preexec_fn``: the child joins the cgroup before it execs anything."""
    data = b"0"

    def enter():
        fd = os.open(procs_file, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return enter


def _normal_priority(then: Optional[Callable[[], None]]) -> Callable[[], None]:
    """A child's ``preexec_fn``: back to nice 0 (the worker may run higher,
    pvcore/worker.py), then ``then``."""
    def preexec() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except OSError:
            pass
        if then is not None:
            then()
    return preexec


def _become_subreaper() -> None:
    """A ``preexec_fn`` (survives exec): orphaned descendants stay ours."""
    if _libc is not None and _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _environ_has(pid: int, needle: bytes) -> bool:
    return _environ_has_all(pid, (needle,))


def _environ_has_all(pid: int, needles: Sequence[bytes]) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            entries = fh.read().split(b"\0")
    except OSError:
        return False
    return all(needle in entries for needle in needles)


def environ_names(pid: int, variable: str) -> Optional[bool]:
    """Whether process ``pid``'s environment sets ``variable`` (``None``: unreadable)."""
    prefix = variable.encode() + b"="
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return any(entry.startswith(prefix) for entry in fh.read().split(b"\0"))
    except OSError:
        return None


class ProcessGroups:
    """Spawns, stops and remembers supervised process groups.

    :param record_dir: where group records live (survives a worker crash).
    :param popen: injected for tests; ``subprocess.Popen`` by default.
    :param cgroups: ``"auto"`` (contained children get a cgroup when pvcore
        can create one) or ``"off"`` (always the subreaper fallback).
    """

    def __init__(self, record_dir: str, popen: Callable = subprocess.Popen, cgroups: str = "auto"):
        self._dir = record_dir
        self._popen = popen
        self._lock = threading.Lock()
        self._records: Dict[int, str] = {}
        self._contained: Dict[int, str] = {}  # leader pid -> contain name
        # NOTE: a worker killed between fork and writing the record leaves a
        # child no record names; the tag in its environment still does.
        self.tag = hashlib.sha256(os.path.abspath(record_dir).encode()).hexdigest()[:16]
        self._cgroup_mode = cgroups
        self._tree: Optional[CgroupTree] = None
        self._tree_checked = False
        # NOTE: spawn and close exclude each other, so no child starts once
        # close() has swept (and none is half-recorded while it sweeps).
        self._spawn_lock = threading.Lock()
        self._closed = False
        #: :class:`pvcore.logdir.LogDir` children's ``log_path`` output goes
        #: through (set by the core at startup); ``None``: appended directly.
        self.logs = None

    @property
    def cgroups(self) -> Optional[CgroupTree]:
        """The container cgroup tree, once :meth:`open` found one (else ``None``)."""
        return self._tree

    def open(self) -> Optional[CgroupTree]:
        """Find (and create) the cgroup tree; idempotent. Called by :meth:`kill_leftovers`."""
        global _libc
        with self._lock:
            if not self._tree_checked:
                self._tree_checked = True
                if self._cgroup_mode != "off":
                    self._tree = CgroupTree.detect(self.tag)
                if self._tree is None and _libc is None:
                    try:
                        _libc = ctypes.CDLL(None, use_errno=True)
                    except OSError:
                        pass
                log.info("containment", cgroups=repr(self._tree) if self._tree else None,
                         fallback=None if self._tree else "subreaper")
            return self._tree

    def close(self) -> None:
        """End for good: refuse further spawns, kill whatever is still running, remove the cgroup tree.

        Owners stop their children before this; what is left is a child
        spawned while its owner was stopping (a spawn racing the shutdown,
        or one interrupted by a signal before its owner knew its pid). A
        process of pvcore's must never outlive it, so every group still
        recorded and every process carrying the tag is killed here.
        """
        with self._spawn_lock:
            self._closed = True
        with self._lock:
            leftover = list(self._records.items())
            self._records.clear()
            self._contained.clear()
        for pid, path in leftover:
            log.warning("process_outlived_its_owner", child_pid=pid)
            self._signal_group(pid, signal.SIGKILL)
            try:
                os.unlink(path)
            except OSError:
                pass
        self._kill_tagged(set())
        if self._tree is not None:
            for name in self._tree.kill_all(keep=()):
                log.warning("leftover_cgroup_killed", cgroup=name)
            self._tree.close()

    def cgroup_of(self, proc: subprocess.Popen) -> Optional[CgroupRef]:
        """The cgroup a contained child runs in, or ``None``."""
        name = self._contained.get(proc.pid)
        if name is None or self._tree is None:
            return None
        return self._tree.ref(name)

    def _record_path(self, key: str) -> str:
        return os.path.join(self._dir, _SAFE.sub("_", key) + ".pgid")

    def spawn(
        self,
        key: str,
        argv: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        log_path: Optional[str] = None,
        contain: Optional[str] = None,
    ) -> subprocess.Popen:
        """Start ``argv`` as the leader of a new session; remember it as ``key``.

        stdout and stderr go to ``log_path`` (appended, within the log budget
        of :attr:`logs`) or /dev/null.

        :param contain: a name for a child that may be hostile (a container):
            it runs in cgroup ``<tree>/<contain>``, or as a child subreaper
            without cgroups (see the module docstring). :meth:`stop` and
            :meth:`reaped` then end every process it left.
        """
        with self._spawn_lock:
            if self._closed:
                raise OSError(errno.ESHUTDOWN, f"not starting {key}: pvcore is stopping")
            return self._spawn(key, argv, env, cwd, log_path, contain)

    def _spawn(self, key, argv, env, cwd, log_path, contain) -> subprocess.Popen:
        os.makedirs(self._dir, exist_ok=True)
        env = dict(os.environ if env is None else env)
        env[TAG_VARIABLE] = self.tag
        preexec = None
        if contain is not None:
            env[CONTAINED_VARIABLE] = contain
            tree = self.open()
            if tree is not None:
                tree.create(contain)
                preexec = _enter_cgroup(tree.procs_file(contain))
            else:
                preexec = _become_subreaper
        preexec = _normal_priority(preexec)
        if log_path and self.logs is not None:
            out = self.logs.writer(log_path)  # bounded (pvcore/logdir.py)
        elif log_path:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
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
                preexec_fn=preexec,
            )
        finally:
            if log_path:
                os.close(out)
        path = self._record_path(key)
        with open(path, "w") as fh:
            fh.write(f"{proc.pid} {start_time(proc.pid) or ''}\n")
        with self._lock:
            self._records[proc.pid] = path
            if contain is not None:
                self._contained[proc.pid] = contain
        log.info("process_spawned", key=key, child_pid=proc.pid, argv=list(argv))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM the group, wait up to ``timeout``, then SIGKILL it.

        :return: the leader's exit status (negative for a signal).
        """
        strays = self._strays(proc)
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("process_kill", child_pid=proc.pid, after_s=timeout)
                self._signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self.reaped(proc, strays)
        return proc.returncode

    def _strays(self, proc: subprocess.Popen) -> List[Tuple[int, str]]:
        """Descendants of a contained child outside its group (no-cgroup fallback)."""
        if proc.pid not in self._contained or self._tree is not None:
            return []
        return [(pid, started) for pid, pgid, started in descendants(proc.pid) if pgid != proc.pid]

    def reaped(self, proc: subprocess.Popen, strays: Sequence[Tuple[int, str]] = ()) -> None:
        """The leader has exited: kill what is left of it, drop the record.

        What is left: its process group; for a contained child, its whole
        cgroup, or without cgroups the descendants it still had (``strays``,
        from before it exited) and the processes carrying its name.
        """
        self._signal_group(proc.pid, signal.SIGKILL)
        name = self._contained.get(proc.pid)
        if name is not None:
            if self._tree is not None:
                self._tree.kill(name, timeout=2.0)
            else:
                self._kill_contained(name, strays)
        with self._lock:
            self._contained.pop(proc.pid, None)
            path = self._records.pop(proc.pid, None)
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def signal(self, proc: subprocess.Popen, signum: int) -> None:
        """Send ``signum`` to the whole group of ``proc``."""
        self._signal_group(proc.pid, signum)

    def _kill_contained(self, name: str, strays: Sequence[Tuple[int, str]]) -> None:
        for pid, started in strays:
            if start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        # NOTE: a process that escaped the tree and cleared its environment
        # is beyond reach without cgroups (docs/architecture.md, "Callers").
        needles = (f"{TAG_VARIABLE}={self.tag}".encode(), f"{CONTAINED_VARIABLE}={name}".encode())
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid() and _environ_has_all(int(entry), needles):
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_leftovers(self) -> int:
        """Kill the groups a previous (crashed) worker left behind.

        A record is trusted only if the group's leader is gone or still has
        the recorded start time, so a recycled pid is never hit. Every
        container cgroup no live child owns is killed and removed.
        """
        with self._spawn_lock:
            self._closed = False  # a core started again after close()
        tree = self.open()
        if tree is not None:
            for name in tree.kill_all(keep=self._contained.values()):
                log.warning("leftover_cgroup_killed", cgroup=name)
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
                    if leader_start is not None:
                        # a contained leader without cgroups is a subreaper:
                        # whatever left its group is still below it.
                        for pid, _pgid, _started in descendants(pgid):
                            if pid not in members:
                                members.append(pid)
                                try:
                                    os.kill(pid, signal.SIGKILL)
                                except OSError:
                                    pass
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
