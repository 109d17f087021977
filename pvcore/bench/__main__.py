"""``python -m pvcore.bench [--quick] [--only NAME]``: run every figure, print one table,
write ``var/bench/<timestamp>.json``.

The core's figures live here; a plugin adds its own through the ``pvcore.bench``
entry-point group (a sequence of ``figure(quick) -> rows`` functions), so the
bench, like the core, names no plugin (pv_lxc's container-start figure is one).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from pvcore.bench.figures import FIGURES
from pvcore.bench.memory import MEMORY_FIGURES
from pvcore.bench.starvation import STARVATION_FIGURES
from pvcore.bench.streams import STREAM_FIGURES
from pvcore.bench.tenants import TENANT_FIGURES


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def render(rows) -> str:
    header = ("figure", "measure", "pvcore", "baseline", "baseline value", "ratio", "target", "ok")
    table = [header] + [
        (r["figure"], r["measure"], _fmt(r["value"]), r["baseline"] or "-", _fmt(r["baseline_value"]),
         _fmt(r["ratio"]), r["target"] or "-", {True: "yes", False: "NO", None: "-"}[r["ok"]])
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def plugin_figures() -> tuple:
    """Figures that installed plugins declare in the ``pvcore.bench`` entry-point group."""
    from importlib.metadata import entry_points

    found = []
    for ep in sorted(entry_points(group="pvcore.bench"), key=lambda e: e.name):
        found.extend(ep.load())
    return tuple(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pvcore.bench")
    parser.add_argument("--quick", action="store_true", help="each figure briefly (a smoke run)")
    parser.add_argument("--only", action="append", help="run only figures whose name contains this")
    parser.add_argument("--out", default="var/bench", help="directory for the JSON results")
    args = parser.parse_args(argv)
    rows = []
    for figure in FIGURES + STREAM_FIGURES + plugin_figures() + STARVATION_FIGURES + TENANT_FIGURES + MEMORY_FIGURES:
        if args.only and not any(name in figure.__name__ for name in args.only):
            continue
        t0 = time.monotonic()
        rows.extend(figure(args.quick))
        print(f"# {figure.__name__} done in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    print(render(rows))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, time.strftime("%Y%m%dT%H%M%S") + ".json")
    with open(path, "w") as fh:
        json.dump({"quick": args.quick, "machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}, fh,
                  indent=1)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
