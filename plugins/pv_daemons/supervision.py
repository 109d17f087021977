"""The daemon table and the service that keeps its processes running.

Each daemon is a process group spawned through ``core.supervisor``. One
thread (the :class:`DaemonSupervisor` service) polls the daemons' own Popen
objects, logs every crash (``daemon_exited``) and respawns a daemon whose
``respawn`` flag is still set after an exponential backoff
(``daemon_respawned``). Control actions (``stop``/``start``/``restart``) run
synchronously in the caller's thread, serialised per daemon.

pid as ``GET /daemons`` shows it: ``> 0`` running, ``0`` never started or
waiting for a respawn, ``-1`` stopped by request (or exited with respawn off).

Every change of a daemon's status (``RUNNING``, ``RESPAWNING`` while a respawn
is scheduled, ``STOPPED``) or pid is published as a ``daemon.status`` event
(docs/plugins.md, "Publishing and following device events"), after it is visible in ``GET /daemons``.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import structlog

from pvcore.services import DaemonSpec, Service

log = structlog.get_logger(__name__)

ACTIONS = ("start", "stop", "restart")


class Backoff:
    """Respawn delays: ``initial`` doubling up to ``maximum``; a daemon that
    stayed up ``reset_after`` seconds starts over at ``initial``."""

    def __init__(self, initial: float = 0.5, maximum: float = 10.0, reset_after: float = 30.0):
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self._next = initial

    def after_exit(self, uptime: float) -> float:
        """The delay before the next respawn of a daemon that ran ``uptime`` s."""
        if uptime >= self.reset_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class Daemon:
    """One daemon's spec and runtime state (guarded by the table's lock)."""

    def __init__(self, spec: DaemonSpec, backoff: Backoff):
        self.spec = spec
        self.name = spec.name
        self.proc = None
        self.pid = 0
        self.respawn = bool(spec.autostart)
        self.started_at = 0.0
        self.respawn_at: Optional[float] = None  # monotonic time of a scheduled respawn
        self.stopping = False  # a control action owns the process right now
        self.backoff = backoff
        self.op_lock = threading.Lock()  # serialises control actions
        self.published = ("STOPPED", 0)  # status and pid last announced

    @property
    def status(self) -> str:
        if self.proc is not None:
            return "RUNNING"
        return "RESPAWNING" if self.respawn_at is not None else "STOPPED"

    def as_json(self) -> dict:
        return {"name": self.name, "pid": self.pid, "respawn": self.respawn}


def binary_exists(argv0: str) -> bool:
    """Upstream lists a daemon whose binary is missing with ``respawn: false``."""
    if os.sep in argv0:
        return os.access(argv0, os.X_OK)
    return shutil.which(argv0) is not None


class DaemonTable:
    """Every declared daemon, in declaration order, and what can be done to them.

    :param collect: returns the :class:`DaemonSpec` list (called once, lazily,
        so every plugin's startup has run first).
    :param supervisor: ``core.supervisor`` (spawn/stop/reaped/signal).
    :param log_dir: each daemon's stdout/stderr go to ``<log_dir>/<name>.log``.
    :param stop_timeout: seconds between SIGTERM and SIGKILL.
    :param clock: injected monotonic clock.
    """

    def __init__(self, collect: Callable[[], List[DaemonSpec]], supervisor, log_dir: str, stop_timeout: float,
                 clock: Callable[[], float] = time.monotonic, backoff: Callable[[], Backoff] = Backoff,
                 publish: Optional[Callable[[str, str, dict], Any]] = None):
        self._publish = publish
        self._collect = collect
        self._supervisor = supervisor
        self._log_dir = log_dir
        self._stop_timeout = stop_timeout
        self._clock = clock
        self._make_backoff = backoff
        self._lock = threading.Lock()
        self._daemons: Optional[Dict[str, Daemon]] = None

    # -- the table -------------------------------------------------------------

    def _table(self) -> Dict[str, Daemon]:
        # NOTE: caller holds self._lock.
        if self._daemons is None:
            table: Dict[str, Daemon] = {}
            for spec in self._collect():
                if spec.name in table:
                    log.warning("daemon_declared_twice", daemon=spec.name)
                    continue
                table[spec.name] = Daemon(spec, self._make_backoff())
            self._daemons = table
        return self._daemons

    def get(self, name: str) -> Optional[Daemon]:
        with self._lock:
            return self._table().get(name)

    def listing(self) -> list:
        with self._lock:
            return [daemon.as_json() for daemon in self._table().values()]

    def names(self) -> list:
        with self._lock:
            return list(self._table())

    def _announce(self, *daemons: Daemon) -> None:
        """Publish ``daemon.status`` for each daemon whose status changed (a new
        pid always comes with one: RUNNING → RESPAWNING/STOPPED → RUNNING).
        The caller does not hold the table lock."""
        if self._publish is None:
            return
        changes = []
        with self._lock:
            for daemon in daemons:
                now = (daemon.status, daemon.pid)
                if now[0] != daemon.published[0]:
                    changes.append((daemon.name, daemon.published[0], now))
                    daemon.published = now
        for name, old, (new, pid) in changes:
            self._publish("daemon.status", name, {"old": old, "new": new, "pid": pid})

    # -- spawning and stopping ---------------------------------------------------

    def _spawn(self, daemon: Daemon) -> bool:
        """Start ``daemon`` now (caller holds its op_lock, not the table lock)."""
        try:
            return self._start_process(daemon)
        finally:
            self._announce(daemon)

    def _start_process(self, daemon: Daemon) -> bool:
        spec = daemon.spec
        if not spec.argv or not binary_exists(spec.argv[0]):
            with self._lock:
                daemon.respawn, daemon.pid, daemon.respawn_at = False, 0, None
            log.warning("daemon_binary_missing", daemon=daemon.name, argv=list(spec.argv))
            return False
        env = dict(os.environ)
        env.update(spec.env)
        try:
            proc = self._supervisor.spawn("daemon-" + daemon.name, spec.argv, env=env,
                                          log_path=os.path.join(self._log_dir, daemon.name + ".log"))
        except OSError as exc:
            with self._lock:
                daemon.pid, daemon.respawn_at = 0, None
                if daemon.respawn:
                    daemon.respawn_at = self._clock() + daemon.backoff.after_exit(0.0)
            log.error("daemon_spawn_failed", daemon=daemon.name, error=str(exc))
            return False
        with self._lock:
            daemon.proc, daemon.pid = proc, proc.pid
            daemon.started_at = self._clock()
            daemon.respawn_at = None
        return True

    def _kill(self, daemon: Daemon) -> None:
        """Stop ``daemon``'s group and wait (caller holds its op_lock)."""
        with self._lock:
            proc = daemon.proc
            daemon.stopping = True
            daemon.respawn_at = None
        try:
            if proc is not None:
                code = self._supervisor.stop(proc, self._stop_timeout)
                log.info("daemon_stopped", daemon=daemon.name, child_pid=proc.pid, code=code)
        finally:
            with self._lock:
                daemon.proc = None
                daemon.pid = -1
                daemon.stopping = False
            self._announce(daemon)

    def control(self, name: str, action: str) -> Optional[bool]:
        """Apply ``action`` to daemon ``name``.

        :return: ``True`` when done, ``False`` for an unknown action or a
            daemon that could not be started, ``None`` for an unknown daemon.
        """
        daemon = self.get(name)
        if daemon is None:
            return None
        if action not in ACTIONS:
            return False
        with daemon.op_lock:
            ok = True
            if action in ("stop", "restart"):
                with self._lock:
                    daemon.respawn = False
                self._kill(daemon)
            if action in ("start", "restart"):
                with self._lock:
                    daemon.respawn = True
                    running = daemon.proc is not None and daemon.proc.poll() is None
                    daemon.backoff.reset()
                if not running:
                    ok = self._spawn(daemon)
            log.info("daemon_control", daemon=name, action=action, pid=daemon.pid, respawn=daemon.respawn)
            return ok

    def signal(self, name: str, signum: int) -> bool:
        """Send ``signum`` to a running daemon's group; ``False`` if it is not running."""
        daemon = self.get(name)
        with self._lock:
            proc = daemon.proc if daemon is not None else None
            if proc is None or daemon.stopping or proc.poll() is not None:
                return False
            self._supervisor.signal(proc, signum)
            return True

    def start_all(self) -> None:
        """Spawn every autostart daemon (at ``core.start()``)."""
        for name in self.names():
            daemon = self.get(name)
            if daemon.spec.autostart:
                with daemon.op_lock:
                    with self._lock:
                        daemon.respawn = True
                    self._spawn(daemon)

    def stop_all(self) -> None:
        """Stop every running daemon; their respawn flags are kept."""
        for name in self.names():
            daemon = self.get(name)
            with daemon.op_lock:
                with self._lock:
                    running = daemon.proc is not None
                    daemon.respawn_at = None
                if running:
                    self._kill(daemon)
                    with self._lock:
                        daemon.pid = 0 if daemon.respawn else -1
                    self._announce(daemon)

    # -- the watch loop ----------------------------------------------------------

    def check(self) -> Optional[float]:
        """Handle exits and due respawns once.

        :return: seconds until the next scheduled respawn, or ``None``.
        """
        now = self._clock()
        due = []
        exited = []
        with self._lock:
            for daemon in self._table().values():
                proc = daemon.proc
                if proc is not None and not daemon.stopping and proc.poll() is not None:
                    self._exited(daemon, proc, now)
                    exited.append(daemon)
                if daemon.respawn_at is not None and daemon.respawn_at <= now:
                    due.append(daemon)
            upcoming = [d.respawn_at - now for d in self._table().values() if d.respawn_at is not None]
        self._announce(*exited)
        for daemon in due:
            if not daemon.op_lock.acquire(blocking=False):
                continue  # a control action is busy with it; look again next round
            try:
                with self._lock:
                    still_due = daemon.respawn and daemon.respawn_at is not None and daemon.proc is None
                if still_due and self._spawn(daemon):
                    log.info("daemon_respawned", daemon=daemon.name, child_pid=daemon.pid)
            finally:
                daemon.op_lock.release()
        return min(upcoming) if upcoming else None

    def _exited(self, daemon: Daemon, proc, now: float) -> None:
        # NOTE: caller holds self._lock.
        self._supervisor.reaped(proc)
        uptime = now - daemon.started_at
        daemon.proc = None
        if daemon.respawn:
            delay = daemon.backoff.after_exit(uptime)
            daemon.pid = 0
            daemon.respawn_at = now + delay
            log.warning("daemon_exited", daemon=daemon.name, child_pid=proc.pid, code=proc.returncode,
                        uptime_s=round(uptime, 3), respawn_in_s=delay)
        else:
            daemon.pid = -1
            log.warning("daemon_exited", daemon=daemon.name, child_pid=proc.pid, code=proc.returncode,
                        uptime_s=round(uptime, 3), respawn_in_s=None)


class DaemonSupervisor(Service):
    """Starts the autostart daemons, watches them, stops them all at shutdown.

    :param poll_interval: how often exits are noticed (seconds).
    """

    name = "daemons"
    priority = 50

    def __init__(self, table: DaemonTable, poll_interval: float = 0.1):
        self._table = table
        self._poll = poll_interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stop.clear()
        self._table.start_all()
        self._thread = threading.Thread(target=self._run, name="daemons", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        self._table.stop_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._table.check()
            except Exception:
                log.exception("daemon_check_failed")
                wait = None
            self._stop.wait(self._poll if wait is None else max(0.0, min(self._poll, wait)))
