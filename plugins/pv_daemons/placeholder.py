"""A harmless stand-in for daemons the demo device cannot really run (``ssh``).

Run as ``python -m pv_daemons.placeholder --placeholder``: it prints one JSON
line, then waits for SIGTERM (or SIGINT) and exits with status 0.
"""
from __future__ import annotations

import json
import os
import signal
import sys


def main() -> int:
    print(json.dumps({"event": "placeholder_started", "pid": os.getpid()}), flush=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
