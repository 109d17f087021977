"""The figures of ``make bench``; each returns rows for the report table.

A row: ``(figure, measure, value, baseline_name, baseline_value, ratio, target, ok)``.
Ratios are pvcore / baseline for throughput, and likewise for times (so lower
is better for times; the target column says which way).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from typing import Dict, List

from pvcore.bench.loadgen import ceiling, compare, load
from pvcore.bench.servers import Server, reset_peak, status_kib
from pvcore.testing import UnixHTTPConnection

MiB = 1 << 20


def row(figure, measure, value, base_name, base_value, target, ok_fn):
    ratio = (value / base_value) if base_value else None
    return {"figure": figure, "measure": measure, "value": value, "baseline": base_name,
            "baseline_value": base_value, "ratio": ratio, "target": target,
            "ok": None if ok_fn is None else bool(ok_fn(value, ratio))}


def _wait_settled(server: Server, timeout: float = 60.0) -> bytes:
    """Wait until every container reached its goal, so the body is stable."""
    deadline = time.monotonic() + timeout
    while True:
        body = server.get("/containers")
        items = json.loads(body)
        if items and all(c["status"] == c["status_goal"] for c in items):
            return body
        if time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def fig_requests(quick: bool) -> List[dict]:
    """1 and 3: GET /containers vs bare Falcon (same gunicorn config); idle RSS; boot time.

    Two baselines: bare Falcon on gunicorn's own gthread worker (what an app
    written by hand would get; the target), and bare Falcon on pvcore's worker
    (the same connection handling: the difference is the framework alone).
    """
    seconds = 1 if quick else 10
    rows = []
    full = Server().start()
    try:
        body = _wait_settled(full)
        body_file = os.path.join(full.base, "containers.json")
        with open(body_file, "wb") as fh:
            fh.write(body)
        bare = Server(bare=True, env={"PVCORE_BENCH_BODY_FILE": body_file}).start(probe="/containers")
        stock = Server(bare=True, env={"PVCORE_BENCH_BODY_FILE": body_file, "PVCORE_BENCH_WORKER_CLASS": "gthread"})
        try:
            stock.start(probe="/containers")
            assert bare.get("/containers") == body == stock.get("/containers")
            time.sleep(0.5)
            rss_full = status_kib(full.worker_pid(), "VmRSS") / 1024
            rss_bare = status_kib(bare.worker_pid(), "VmRSS") / 1024
            rows.append(row("3 memory", "idle worker RSS (MiB)", rss_full, "bare app", rss_bare,
                            "< 45 MiB", lambda v, r: v < 45))
            rows.append(row("3 start-up", "launch → first answer (s)", full.boot_seconds, "bare app",
                            bare.boot_seconds, "< 1.5 s", lambda v, r: v < 1.5))
            for conns in (16, 1):
                for server in (stock, bare, full):
                    load(server.socket, "/containers", conns, 1)  # warm-up
                every = compare({"stock": stock.socket, "bare": bare.socket, "full": full.socket}, "/containers",
                                conns, seconds, rounds=2 if quick else 5)
                s, b, f = every["stock"], every["bare"], every["full"]
                assert f["errors"] == 0 and b["errors"] == 0 and s["errors"] == 0, (f, b, s)
                # The load generator's own ceiling, on the same machine in the
                # same run: against a trivial server answering the same body.
                # Far above both servers' rates, it measures them, not itself.
                top = ceiling(conns, seconds, body_file)
                assert top["errors"] == 0, top["errors"]
                rows.append(row("1 load generator", f"h2load ceiling req/s, {conns} client(s)", top["rps"],
                                "bare falcon", max(b["rps"], s["rps"]), "≥ 10×", lambda v, r: r >= 10))
                busy = conns == 16
                rows.append(row("1 GET /containers", f"req/s, {conns} client(s)", f["rps"], STOCK, s["rps"],
                                "≥ 1.0×" if busy else "", (lambda v, r: r >= 1.0) if busy else None))
                rows.append(row("1 GET /containers", f"p50 ms, {conns} client(s)", f["p50_ms"], STOCK,
                                s["p50_ms"], "", None))
                rows.append(row("1 GET /containers", f"p99 ms, {conns} client(s)", f["p99_ms"], STOCK,
                                s["p99_ms"], "≤ 1.0×" if busy else "", (lambda v, r: r <= 1.0) if busy else None))
                rows.append(row("1 framework alone", f"req/s, {conns} client(s)", f["rps"], SAME, b["rps"],
                                "≥ 0.8×" if busy else "", (lambda v, r: r >= 0.8) if busy else None))
                rows.append(row("1 framework alone", f"p99 ms, {conns} client(s)", f["p99_ms"], SAME,
                                b["p99_ms"], "≤ 1.25×" if busy else "", (lambda v, r: r <= 1.25) if busy else None))
        finally:
            for server in (bare, stock):
                server.stop()
                shutil.rmtree(server.base, ignore_errors=True)
    finally:
        full.stop()
        shutil.rmtree(full.base, ignore_errors=True)
    return rows


#: Figure 1's baselines: bare Falcon on gunicorn's gthread, and on pvcore's worker.
STOCK = "bare falcon, gthread"
SAME = "bare falcon, pvcore worker"


def _timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def fig_objects(quick: bool) -> List[dict]:
    """2: PUT/GET of a large object vs sha256sum+cp, a Python hash-and-copy loop, and cat."""
    size = (32 if quick else 256) * MiB
    server = Server().start()
    rows = []
    try:
        work = os.path.join(server.base, "work")
        os.makedirs(work)
        src = os.path.join(work, "blob")
        with open(src, "wb") as fh:
            for _ in range(size // MiB):
                fh.write(os.urandom(MiB))
        digest = hashlib.sha256()
        with open(src, "rb") as fh:
            for chunk in iter(lambda: fh.read(MiB), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        mb = size / 1e6

        # Like the server, each baseline writes a new file (removed afterwards).
        def shell_baseline():
            copy = os.path.join(work, "copy")
            subprocess.run(["sha256sum", src], check=True, capture_output=True)
            shutil.copyfile(src, copy)
            subprocess.run(["sync", copy], check=True)  # fsync of that file
            os.unlink(copy)

        def python_baseline():
            h = hashlib.sha256()
            copy = os.path.join(work, "copy2")
            with open(src, "rb") as fin, open(copy, "wb") as fout:
                for chunk in iter(lambda: fin.read(MiB), b""):
                    h.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            assert h.hexdigest() == sha
            os.unlink(copy)

        worker = server.worker_pid()
        rss_before = status_kib(worker, "VmRSS")
        reset_peak(worker)
        final = os.path.join(server.base, "storage", "objects", sha)

        def upload():
            conn = UnixHTTPConnection(server.socket, timeout=600)
            conn.blocksize = MiB
            with open(src, "rb") as fh:
                status, _, body = conn.call("PUT", f"/objects/{sha}", body=fh,
                                            headers={"Content-Length": str(size),
                                                     "Content-Type": "application/octet-stream"})
            conn.close()
            assert status == 200, body
            os.unlink(final)  # so the next run stores it again

        # Interleaved runs, median of each: page-cache writeback from one run
        # must not land on whichever happens to come next.
        os.sync()
        times = {"shell": [], "python": [], "put": []}
        for _ in range(1 if quick else 3):
            times["shell"].append(_timed(shell_baseline))
            times["python"].append(_timed(python_baseline))
            times["put"].append(_timed(upload))
            os.sync()
        t_shell, t_py, t_put = (statistics.median(times[k]) for k in ("shell", "python", "put"))
        growth = (status_kib(worker, "VmHWM") - rss_before) / 1024
        rows.append(row("2 PUT /objects", f"MB/s, {size // MiB} MiB", mb / t_put, "sha256sum+cp", mb / t_shell,
                        "≥ 1.0×", lambda v, r: r >= 1.0))
        rows.append(row("2 PUT /objects", f"MB/s, {size // MiB} MiB", mb / t_put, "python hash+copy loop",
                        mb / t_py, "≥ 0.6×", lambda v, r: r >= 0.6))
        rows.append(row("2 PUT /objects", "worker peak RSS growth (MiB)", growth, "", None, "< 16 MiB",
                        lambda v, r: v < 16))

        conn = UnixHTTPConnection(server.socket, timeout=600)
        with open(src, "rb") as fh:
            assert conn.call("PUT", f"/objects/{sha}", body=fh, headers={"Content-Length": str(size)})[0] == 200
        conn.close()
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", server.socket,
                f"http://localhost/objects/{sha}"]

        def download():
            assert subprocess.run(curl, capture_output=True, text=True, check=True).stdout == "200"

        runs = 1 if quick else 5
        t_get = statistics.median(_timed(download) for _ in range(runs))
        # The baseline: the same bytes crossing a process boundary with no
        # HTTP, as they must for any socket server (a lone `cat > /dev/null`
        # never leaves the page cache, so it is no baseline for a server).
        t_pipe = statistics.median(_timed(lambda: subprocess.run(f"cat {shlex.quote(src)} | cat > /dev/null", shell=True,
                                                                 check=True)) for _ in range(runs))
        rows.append(row("2 GET /objects", f"MB/s, {size // MiB} MiB (curl)", mb / t_get, "cat | cat > /dev/null",
                        mb / t_pipe, "≥ 0.7×", lambda v, r: r >= 0.7))
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)
    return rows


def _seed_scale(storage: str, objects: int) -> None:
    """``objects`` small objects, referenced 10 per local revision."""
    objdir = os.path.join(storage, "objects")
    locals_dir = os.path.join(storage, "trails", "locals")
    os.makedirs(objdir, exist_ok=True)
    os.makedirs(locals_dir, exist_ok=True)
    shas = []
    for i in range(objects):
        data = b"scale object %d\n" % i
        sha = hashlib.sha256(data).hexdigest()
        with open(os.path.join(objdir, sha), "wb") as fh:
            fh.write(data)
        shas.append(sha)
    for r in range(objects // 10):
        rev = os.path.join(locals_dir, f"r{r}")
        os.makedirs(os.path.join(rev, ".pvr"))
        os.makedirs(os.path.join(rev, ".pv"))
        state = {"#spec": "pantavisor-service-system@1"}
        for j, sha in enumerate(shas[r * 10:(r + 1) * 10]):
            state[f"bsp/blob{j}"] = sha
        with open(os.path.join(rev, ".pvr", "json"), "w") as fh:
            json.dump(state, fh)
        with open(os.path.join(rev, ".pv", "progress"), "w") as fh:
            fh.write('{"status":"NEW","status-msg":"Update ready to be run","progress":0,"retries":0}')


def _median_ms(fn, runs: int) -> float:
    return statistics.median(_timed(fn) for _ in range(runs)) * 1000


def fig_scale(quick: bool) -> List[dict]:
    """4: listing and GC latency with 100 → 1,000 → 10,000 objects (a tenth as many revisions)."""
    sizes = (100, 1000) if quick else (100, 1000, 10000)
    rows = []
    previous = {}
    for n in sizes:
        server = Server()
        _seed_scale(os.path.join(server.base, "storage"), n)
        server.start()
        # Steady state, as on a device: the seeded tree has settled (listings
        # are cached while the directories are unchanged) and one request
        # warmed the caches; the first, cold listing is reported separately.
        time.sleep(1.1)
        try:
            conn = UnixHTTPConnection(server.socket)
            cold = _timed(lambda: conn.call("GET", "/objects")) * 1000
            rows.append(row("4 scale GET /objects", f"first (cold) ms at {n} objects", cold, "", None,
                            "< 200 ms", lambda v, r: v < 200))

            def get(path):
                status, _, body = conn.call("GET", path)
                assert status == 200, (path, status, body[:200])

            def gc():
                status, _, body = conn.call("POST", "/storage/gc")
                assert status == 200, body

            timings = {
                "GET /objects": _median_ms(lambda: get("/objects"), 5),
                "GET /steps": _median_ms(lambda: get("/steps"), 5),
                "GET /steps/{rev}": _median_ms(lambda: get("/steps/locals/r0"), 5),
                "POST /storage/gc": _median_ms(gc, 3),
            }
            conn.close()
            for name, ms in timings.items():
                base = previous.get(name)
                rows.append(row(f"4 scale {name}", f"ms at {n} objects / {n // 10} revisions", ms,
                                f"at {n // 10} objects" if base else "", base[1] if base else None,
                                "< 200 ms, growth ≤ ~10× per 10×",
                                (lambda v, r: v < 200 and (r is None or r <= 12))))
                previous[name] = (n, ms)
        finally:
            server.stop()
            shutil.rmtree(server.base, ignore_errors=True)
    return rows


def _pvcontrol_command() -> List[str]:
    """``pvcontrol`` as developers run it: the script beside this Python."""
    script = os.path.join(os.path.dirname(sys.executable), "pvcontrol")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "pvcontrol"]


def _installed_pvcontrol(base: str) -> List[str]:
    """``pvcontrol`` as a device has it: the client distribution
    (contrib/pvcore-client) installed from this checkout into a fresh venv,
    not in editable mode.

    An editable install loads setuptools' import finder (pathlib, urllib and
    more) at every interpreter start: 15-25 ms that no device pays.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    venv = os.path.join(base, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
    subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--no-deps",
                    os.path.join(root, "contrib", "pvcore-client")], check=True, capture_output=True)
    return [os.path.join(venv, "bin", "pvcontrol")]


def fig_cli(quick: bool) -> List[dict]:
    """5: ``pvcontrol containers ls`` wall time (start-up included) vs curl.

    The target is on pvcontrol as installed on a device; the development
    (editable) install is shown beside it. Quick mode skips the install.
    """
    runs = 3 if quick else 15
    server = Server().start()
    try:
        commands = {"curl": ["curl", "-s", "--unix-socket", server.socket, "http://localhost/containers"],
                    "dev": _pvcontrol_command() + ["-s", server.socket, "containers", "ls"]}
        if not quick:
            commands["device"] = _installed_pvcontrol(server.base) + ["-s", server.socket, "containers", "ls"]
        for cmd in commands.values():
            subprocess.run(cmd, check=True, capture_output=True)  # warm caches
        # Interleaved, like the load figures: other work on the machine weighs on both.
        times: Dict[str, List[float]] = {k: [] for k in commands}
        for _ in range(runs):
            for key, cmd in commands.items():
                times[key].append(_timed(lambda: subprocess.run(cmd, check=True, capture_output=True)))
        ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
        rows = []
        if "device" in ms:
            rows.append(row("5 pvcontrol", "containers ls wall ms (installed)", ms["device"],
                            "curl --unix-socket", ms["curl"], "≤ 4×", lambda v, r: r <= 4))
        rows.append(row("5 pvcontrol", "containers ls wall ms (editable dev install)", ms["dev"],
                        "curl --unix-socket", ms["curl"], "", None))
        return rows
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


FIGURES = (fig_requests, fig_objects, fig_scale, fig_cli)
