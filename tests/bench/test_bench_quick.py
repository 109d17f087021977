"""`make bench QUICK=1` keeps working: every figure runs and reports numbers.

No assertion on speed here (a benchmark is not a timed test); only that each
figure measured something and wrote its results.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.mark.gunicorn
def test_quick_bench_reports_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pvcore.bench", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "*.json"))
    rows = json.load(open(path))["rows"]
    figures = {row["figure"].split()[0] for row in rows}
    # figure 7 (container start, LXC vs process runtime) needs root and the LXC tools
    lxc = os.geteuid() == 0 and all(shutil.which(t) for t in ("lxc-start", "mksquashfs", "busybox", "nc.openbsd"))
    # figure 10 (artifact checksum) compares with coreutils' sha256sum
    checksum = shutil.which("sha256sum") is not None
    assert figures == {"1", "2", "3", "4", "5", "6", "8", "9"} | ({"7"} if lxc else set()) | (
        {"10"} if checksum else set())
    for row in rows:
        assert isinstance(row["value"], (int, float)) and row["value"] >= 0, row
    assert "GET /containers" in proc.stdout and "ratio" in proc.stdout
