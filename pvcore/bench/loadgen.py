"""HTTP load over a Unix socket with h2load (C, Debian's ``nghttp2-client``).

h2load speaks HTTP/1.1 with keep-alive (``--h1``) and reaches a Unix socket
through ``--base-uri=unix:PATH``; one native thread (its default) keeps it on
at most one of the machine's cores. Latency percentiles come from its
per-request log (``--log-file``: start µs, status, duration µs).

:func:`ceiling` runs the same load against :mod:`pvcore.bench.trivial`, so
the bench can show the load generator is much faster than what it measures.
"""
from __future__ import annotations

import os
import re
import shutil
import socket as socket_mod
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

# NOTE: h2load prints the duration in ms when it is under a second.
_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2load_path() -> str:
    """The h2load executable (``make test-tools`` installs it)."""
    path = shutil.which("h2load")
    if not path:
        raise RuntimeError("h2load not found: `make test-tools` installs it (Debian: nghttp2-client)")
    return path


def _percentile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def parse(stdout: str, log_lines: List[str]) -> Dict[str, float]:
    """h2load's summary plus its per-request log → req/s, p50/p99 in ms, errors, total."""
    finished = _FINISHED.search(stdout)
    requests = _REQUESTS.search(stdout)
    status = _STATUS.search(stdout)
    if not (finished and requests and status):
        raise RuntimeError(f"unexpected h2load output:\n{stdout[-2000:]}")
    total, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    non2xx = sum(map(int, status.groups()[1:]))
    durations = sorted(int(line.split("\t")[2]) / 1000 for line in log_lines if line.count("\t") == 2)
    return {
        "rps": float(finished.group(3)),
        "p50_ms": _percentile(durations, 0.50),
        "p99_ms": _percentile(durations, 0.99),
        "errors": failed + errored + timeout + non2xx + (done - succeeded),
        "total": total,
        "done": done,
        "seconds": float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1),
        "durations_ms": durations,
    }


def merge(runs: List[Dict[str, float]]) -> Dict[str, float]:
    """Several runs against one server as one: total rate, percentiles over every request."""
    durations = sorted(d for run in runs for d in run["durations_ms"])
    seconds = sum(run["seconds"] for run in runs)
    done = sum(run["done"] for run in runs)
    return {
        "rps": done / seconds if seconds else 0.0,
        "p50_ms": _percentile(durations, 0.50),
        "p99_ms": _percentile(durations, 0.99),
        "errors": sum(run["errors"] for run in runs),
        "total": sum(run["total"] for run in runs),
        "done": done,
        "seconds": seconds,
        "durations_ms": durations,
    }


def compare(servers: Dict[str, str], path: str, connections: int, seconds: float,
            rounds: int) -> Dict[str, Dict[str, float]]:
    """``seconds`` of load on each of ``servers`` (name → socket), in ``rounds``
    alternating slices: whatever else runs on the machine meanwhile weighs on
    every server alike, instead of on whichever happened to run then."""
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in servers}
    names = list(servers)
    for i in range(rounds):
        for name in (names if i % 2 == 0 else names[::-1]):
            runs[name].append(load(servers[name], path, connections, seconds / rounds))
    return {name: merge(results) for name, results in runs.items()}


def load(socket: str, path: str, connections: int, seconds: float) -> Dict[str, float]:
    """Run ``connections`` keep-alive clients for ``seconds``: req/s, p50 and p99 in ms, errors."""
    with tempfile.NamedTemporaryFile("r", prefix="h2load-", suffix=".log") as log:
        out = subprocess.run(
            [h2load_path(), "--h1", f"--base-uri=unix:{socket}", "-c", str(connections), "-t", "1",
             "-D", f"{int(seconds * 1000)}ms", f"--log-file={log.name}", f"http://localhost{path}"],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout
        return parse(out, log.read().splitlines())


def _accepts(path: str) -> bool:
    with socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def ceiling(connections: int, seconds: float, body_file: Optional[str] = None) -> Dict[str, float]:
    """The load generator's rate against :mod:`pvcore.bench.trivial` (same clients, same body)."""
    base = tempfile.mkdtemp(prefix="pvt")
    sock = os.path.join(base, "s")
    cmd = [sys.executable, "-m", "pvcore.bench.trivial", sock] + ([body_file] if body_file else [])
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 30
        while not _accepts(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the trivial server did not start")
            time.sleep(0.01)
        load(sock, "/", connections, min(seconds, 1))  # warm-up
        return load(sock, "/", connections, seconds)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)
