"""Module loaders: ``modprobe`` on a device, a recorder on the demo device.

A loader has ``load(module, args) -> bool`` and ``unload(module) -> bool``
(the ``pv_drivers_loader`` hook returns one).
"""
from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
from typing import Callable, List, Sequence

import structlog

log = structlog.get_logger(__name__)


def run_command(argv: Sequence[str]) -> int:
    """Run ``argv`` and return its exit status (127 when it cannot run)."""
    try:
        result = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("driver_command_failed", argv=list(argv), error=str(exc))
        return 127
    if result.returncode != 0:
        log.warning("driver_command_failed", argv=list(argv), code=result.returncode,
                    stderr=result.stderr.decode("utf-8", "replace")[-500:])
    return result.returncode


def modprobe_argv(module: str, args: str = "") -> List[str]:
    """``modprobe <module> <params...>``; params are split like a shell would."""
    try:
        params = shlex.split(args)
    except ValueError:
        params = args.split()
    return ["modprobe", module, *params]


class ModprobeLoader:
    """Runs ``modprobe`` / ``modprobe -r`` through ``runner(argv) -> status``."""

    def __init__(self, runner: Callable[[Sequence[str]], int] = run_command):
        self._runner = runner

    def load(self, module: str, args: str = "") -> bool:
        return self._runner(modprobe_argv(module, args)) == 0

    def unload(self, module: str) -> bool:
        return self._runner(["modprobe", "-r", module]) == 0


class DryRunLoader:
    """Records what would run and succeeds.

    Every call is kept in ``calls`` and appended as one JSON line to
    ``log_path`` (``{"op","module","args","argv","ts"}``).
    """

    def __init__(self, log_path: str):
        self.log_path = log_path
        self.calls: List[dict] = []
        self._lock = threading.Lock()

    def _record(self, op: str, module: str, args: str, argv: List[str]) -> bool:
        entry = {"op": op, "module": module, "args": args, "argv": argv, "ts": round(time.time(), 3)}
        with self._lock:
            self.calls.append(entry)
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        log.info("driver_dry_run", op=op, module=module, argv=argv)
        return True

    def load(self, module: str, args: str = "") -> bool:
        return self._record("load", module, args, modprobe_argv(module, args))

    def unload(self, module: str) -> bool:
        return self._record("unload", module, "", ["modprobe", "-r", module])
