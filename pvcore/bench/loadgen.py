"""HTTP load over a Unix socket with autocannon (npm), installed by ``make bench``.

autocannon speaks HTTP/1.1 with keep-alive over ``--socketPath`` and reports
req/s and latency percentiles as JSON.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))


def autocannon_path() -> str:
    """The autocannon executable: ``$AUTOCANNON``, ``.bench/node_modules``, or PATH."""
    candidates = [os.environ.get("AUTOCANNON", ""), os.path.join(os.getcwd(), ".bench", "node_modules", ".bin", "autocannon"),
                  shutil.which("autocannon") or ""]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("autocannon not found: run `make bench` (it installs it with npm into .bench/)")


def load(socket: str, path: str, connections: int, seconds: float) -> Dict[str, float]:
    """Run ``connections`` keep-alive clients for ``seconds``: req/s, p50 and p99 in ms, errors."""
    out = subprocess.run(
        [autocannon_path(), "--json", "--socketPath", socket, "-c", str(connections), "-d", str(seconds),
         "--renderStatusCodes", f"http://localhost{path}"],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    report = json.loads(out)
    non2xx = report.get("non2xx", 0)
    return {
        "rps": report["requests"]["average"],
        "p50_ms": report["latency"]["p50"],
        "p99_ms": report["latency"]["p99"],
        "errors": report.get("errors", 0) + report.get("timeouts", 0) + non2xx,
        "total": report["requests"]["total"],
    }
