"""Figure 10 of ``make bench``: re-hashing a revision's objects before it runs
(``PV_SECUREBOOT_CHECKSUM``) against ``sha256sum`` of the same bytes."""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Dict, List

from pvcore.bench.figures import row
from pvcore.testing import short_tempdir

MIB = 1 << 20


def _objects(directory: str, total: int, count: int) -> Dict[str, str]:
    """``count`` random objects of ``total`` bytes in all, stored by sha256 as pv_objects stores them."""
    import hashlib

    objects = {}
    os.makedirs(directory)
    for index in range(count):
        data = os.urandom(total // count)
        sha = hashlib.sha256(data).hexdigest()
        with open(os.path.join(directory, sha), "wb") as fh:
            fh.write(data)
        objects[f"app{index}/root.squashfs"] = sha
    return objects


def fig_checksum(quick: bool) -> List[dict]:
    """10: verify a 256 MiB revision (8 objects) through pv_secureboot's hook vs ``sha256sum``.

    Both read the same files from the page cache (each is run once to warm
    it, then alternately); throughput in MiB/s, median of the runs. The hook
    streams each object through one buffer (docs/protocol.md §D12.5).
    """
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        print("# fig_checksum skipped: no sha256sum", file=sys.stderr)
        return []
    from pvcore.loader import load_core

    total = (32 if quick else 256) * MIB
    runs = 2 if quick else 5
    base = short_tempdir("pvsb")
    try:
        storage = os.path.join(base, "storage")
        objects = _objects(os.path.join(storage, "objects"), total, 8)
        core = load_core({"storage_dir": storage, "run_dir": os.path.join(base, "run"), "demo": False})
        paths = [os.path.join(storage, "objects", sha) for sha in objects.values()]

        def ours() -> float:
            t0 = time.perf_counter()
            bad = core.call("pv_secureboot_corrupt_objects", objects=objects)
            elapsed = time.perf_counter() - t0
            assert bad == [], bad
            return elapsed

        def theirs() -> float:
            t0 = time.perf_counter()
            subprocess.run([sha256sum, *paths], check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t0

        ours(), theirs()  # page cache
        samples = {"ours": [], "theirs": []}
        for _ in range(runs):
            samples["ours"].append(ours())
            samples["theirs"].append(theirs())
        mib = total / MIB
        rate = {name: mib / statistics.median(times) for name, times in samples.items()}
        return [row("10 artifact checksum", f"verify {int(mib)} MiB revision, MiB/s", rate["ours"],
                    "sha256sum, same bytes", rate["theirs"], ">= 0.8x", lambda v, r: r is not None and r >= 0.8)]
    finally:
        shutil.rmtree(base, ignore_errors=True)


#: Found by ``python -m pvcore.bench`` through the ``pvcore.bench`` entry-point group.
FIGURES = (fig_checksum,)
