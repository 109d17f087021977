"""Upstream's own transaction tool, ``pvtx``, unmodified, against a real pvcore (docs/protocol.md §1, §7.8, §7.9).

pvtx is built from the pantavisor sources (``$PVCORE_UPSTREAM_DIR``, by
default ``/work/upstream``; nothing of it is kept in this repository) with
cmake and a C compiler; without them the tests skip, saying why. pvtx only
looks for pv-ctrl at fixed paths (``/run/pantavisor/pv/pv-ctrl`` first), so
each run gets a private mount namespace (``unshare``) where ``/run`` holds
a link to the test server's socket.

pvtx reads an answer the simple way: it waits until the socket is readable,
reads once, and reads again only what has arrived by then. A response sent
in two writes lost its body (``begin`` stored an empty state and said it had
succeeded); an early 507 closed on a client still writing killed it with
SIGPIPE.
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from pvcore.testing import short_tempdir, write_revision

pytestmark = pytest.mark.gunicorn

UPSTREAM = os.environ.get("PVCORE_UPSTREAM_DIR", "/work/upstream")
SPEC = "pantavisor-service-system@1"
BEGINS = int(os.environ.get("PVTX_BEGINS", "50"))


@pytest.fixture(scope="module")
def pvtx(tmp_path_factory):
    """The path of a pvtx built from upstream's sources (or skip, saying why)."""
    source = os.path.join(UPSTREAM, "pvtx")
    if not os.path.isfile(os.path.join(source, "CMakeLists.txt")):
        pytest.skip(f"upstream's pvtx sources are not here ({source}); set PVCORE_UPSTREAM_DIR")
    missing = [tool for tool in ("cmake", "make", "cc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"building pvtx needs {', '.join(missing)}")
    build = tmp_path_factory.mktemp("pvtx-build")
    try:
        subprocess.run(["cmake", "-S", source, "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run(["make", "-C", str(build), "-j2", "pvtx"], check=True, capture_output=True, timeout=300)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"pvtx did not build here: {exc.stderr.decode(errors='replace')[-400:]}")
    binary = str(build / "pvtx")
    probe = _namespace_prefix(str(build))
    if probe is None:
        pytest.skip("pvtx only finds pv-ctrl at /run/pantavisor/pv/pv-ctrl: "
                    "running it needs a private mount namespace (unshare), not available here")
    return binary


def _namespace_prefix(scratch: str):
    """The ``unshare`` arguments that give a process its own mount namespace, or None."""
    for prefix in (["unshare", "--mount", "--propagation", "private"], ["unshare", "-r", "-m"]):
        if shutil.which(prefix[0]) is None:
            return None
        done = subprocess.run(prefix + ["mount", "--bind", scratch, scratch], capture_output=True)
        if done.returncode == 0:
            return prefix
    return None


class Pvtx:
    """Runs pvtx commands against ``server``, with its own PVTXDIR."""

    def __init__(self, binary: str, server):
        self.binary = binary
        self.server = server
        self.base = short_tempdir("pvtx")
        self.run_dir = os.path.join(self.base, "run")
        os.makedirs(os.path.join(self.run_dir, "pantavisor", "pv"))
        os.symlink(os.path.abspath(server.socket), os.path.join(self.run_dir, "pantavisor", "pv", "pv-ctrl"))
        self.prefix = _namespace_prefix(self.base)
        self.pvtxdir = os.path.join(self.base, "txn")

    def __call__(self, *args: str, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
        script = 'mount --bind "$0" /run && exec "$@"'
        env = dict(os.environ, PVTXDIR=self.pvtxdir)
        done = subprocess.run(self.prefix + ["sh", "-c", script, self.run_dir, self.binary, *args],
                              input=stdin, capture_output=True, env=env, timeout=60)
        if check:
            assert done.returncode == 0, (args, done.returncode, done.stdout[-500:], done.stderr[-1000:])
        return done

    def fresh(self) -> None:
        shutil.rmtree(self.pvtxdir, ignore_errors=True)

    def state(self) -> dict:
        with open(os.path.join(self.pvtxdir, "current.json"), "rb") as fh:
            return json.loads(fh.read() or b"null")

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def padded_state(size: int) -> dict:
    """A revision without containers whose state JSON is about ``size`` bytes."""
    state = {"#spec": SPEC, "pad/src.json": {"pad": ""}}
    state["pad/src.json"]["pad"] = "p" * max(0, size - len(json.dumps(state)))
    return state


def device(start_gunicorn, state: dict, env=None):
    base = short_tempdir("pvtxd")
    write_revision(os.path.join(base, "storage"), state)
    return start_gunicorn(base=base, env=env)


def package(files: dict, objects: dict) -> bytes:
    """A pvtx package: a gzip tarball with a ``json`` descriptor (a state, as
    ``pvr export`` writes it) and ``objects/<sha>`` files."""
    files = dict(files, **{"#spec": SPEC})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in [("json", json.dumps(files, sort_keys=True).encode())] + [
                (f"objects/{sha}", data) for sha, data in objects.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("size", [2 * 1024, 200 * 1024])
def test_begin_from_the_running_revision_gets_the_whole_state_every_time(pvtx, start_gunicorn, size):
    server = device(start_gunicorn, padded_state(size))
    running = server.request("GET", "/steps/current")[2]
    assert abs(len(running) - size) < 512
    run = Pvtx(pvtx, server)
    try:
        whole = 0
        for _ in range(BEGINS):
            run.fresh()
            run("begin", "current")
            whole += run.state() == json.loads(running)
        assert whole == BEGINS, f"pvtx begin got the whole {len(running)}-byte state {whole} of {BEGINS} times"
    finally:
        run.close()


def test_add_commit_and_queue_against_a_real_device(pvtx, start_gunicorn, tmp_path):
    server = device(start_gunicorn, padded_state(2048))
    blob = os.urandom(3 << 20)
    sha = hashlib.sha256(blob).hexdigest()
    pkg = tmp_path / "pkg.tgz"
    pkg.write_bytes(package({"extra/src.json": {"from": "pvtx"}, "extra/blob.bin": sha}, {sha: blob}))
    running = json.loads(server.request("GET", "/steps/current")[2])
    expected = dict(running, **{"extra/src.json": {"from": "pvtx"}, "extra/blob.bin": sha})
    run = Pvtx(pvtx, server)
    try:
        # add uploads the package's object through PUT /objects; commit stores the state as named.
        run("begin", "current")
        run("add", str(pkg))
        assert server.request("GET", f"/objects/{sha}")[2] == blob
        run("commit", "locals/pvtx-named")
        status, _, body = server.request("GET", "/steps/locals/pvtx-named")
        assert status == 200 and json.loads(body) == expected
        # An automatic name, printed by pvtx.
        run("begin", "current")
        run("add", str(pkg))
        name = run("commit").stdout.decode().strip().splitlines()[-1]
        assert name.startswith("locals/pvtx-")
        status, _, body = server.request("GET", f"/steps/{name}")
        assert status == 200 and json.loads(body) == expected
        # A name is stored as sent or not at all: never under a shorter one.
        revisions = server.request("GET", "/steps")[2]
        run("begin", "current")
        refused = run("commit", "locals/pvtx-named?x", check=False)
        assert refused.returncode != 0 and b"failed to upload" in refused.stderr, refused.stderr
        assert json.loads(server.request("GET", "/steps/locals/pvtx-named")[2]) == expected
        assert server.request("GET", "/steps")[2] == revisions
        run("abort")
        # The queue: unpacked locally, processed on top of the running revision.
        queue, objects = tmp_path / "queue", tmp_path / "objects"
        run("queue", "new", str(queue), str(objects))
        run("queue", "unpack", str(pkg))
        run("queue", "process", "current")
        assert run.state() == expected
    finally:
        run.close()


def test_an_object_over_the_free_space_is_refused_and_pvtx_says_so(pvtx, start_gunicorn, tmp_path):
    # Early 507 (docs/protocol.md §7.8): pvtx writes the whole object before it
    # reads, so the server drains it and the 507 reaches pvtx (no SIGPIPE).
    server = device(start_gunicorn, padded_state(2048), env={"PVCORE_STORAGE_RESERVED_PERCENT": "100"})
    blob = os.urandom(12 << 20)
    sha = hashlib.sha256(blob).hexdigest()
    pkg = tmp_path / "big.tgz"
    pkg.write_bytes(package({"big/blob.bin": sha}, {sha: blob}))
    run = Pvtx(pvtx, server)
    try:
        run("begin", "current")
        done = run("add", str(pkg), check=False)
        assert done.returncode > 0, (done.returncode, done.stderr)  # not killed by a signal
        assert b"Not enough disk space available" in done.stdout + done.stderr, done.stderr
        assert server.request("GET", f"/objects/{sha}")[0] == 400
    finally:
        run.close()
