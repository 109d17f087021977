"""pvcontrol steps install: client-side install of a compressed step."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

STATE = b'{"#spec":"pantavisor-service-system@1","app/run.json":{}}'
OBJ_A = b"object a contents"
OBJ_B = b"object b, a different one"
SHA_A = hashlib.sha256(OBJ_A).hexdigest()
SHA_B = hashlib.sha256(OBJ_B).hexdigest()


def make_tgz(path, members):
    """Write a gzip tarball with *members* {name: bytes or None (dir)}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def step(tmp_path):
    return make_tgz(tmp_path / "test-step.tgz", {
        "./": None,
        "./json": STATE,
        "./objects": None,
        f"./objects/{SHA_A}": OBJ_A,
        f"./objects/{SHA_B}": OBJ_B,
    })


def serve_listings(pv, objects, steps):
    pv.reply("GET", "/objects", body=json.dumps(objects).encode())
    pv.reply("GET", "/steps", body=json.dumps(steps).encode())


def test_install_uploads_missing_objects_and_state(pv, cli, step):
    # SHA_B appears only inside a longer name: a substring match (upstream)
    # would skip it, an exact match must upload it.
    serve_listings(pv,
                   [{"sha256": SHA_A, "size": str(len(OBJ_A))}, {"sha256": SHA_B + "0", "size": "1"}],
                   [{"name": "locals/test-rev-old", "date": "x", "commitmsg": "", "progress": {}}])
    pv.reply("PUT", f"/objects/{SHA_B}", body=b"")
    pv.reply("PUT", "/steps/locals/test-rev", body=b"")
    pv.reply("PUT", "/steps/locals/test-rev/commitmsg", body=b"")
    res = cli("-m", "test install", "steps", "install", str(step), "locals/test-rev")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == b'{"revision":"locals/test-rev"}\n'
    assert [(r.method, r.path, r.body) for r in pv.requests] == [
        ("GET", "/objects", b""),
        ("PUT", f"/objects/{SHA_B}", OBJ_B),
        ("GET", "/steps", b""),
        ("PUT", "/steps/locals/test-rev", STATE),
        ("PUT", "/steps/locals/test-rev/commitmsg", b"test install"),
    ]
    assert pv.requests[1].header("Content-Type") == "application/octet-stream"
    assert pv.requests[3].header("Content-Type") == "application/json"
    assert pv.connections == 1


def test_install_default_revision_is_archive_sha(pv, cli, step):
    rev = "locals/" + hashlib.sha256(step.read_bytes()).hexdigest()
    serve_listings(pv, [{"sha256": SHA_A, "size": "1"}, {"sha256": SHA_B, "size": "1"}], [])
    pv.reply("PUT", f"/steps/{rev}", body=b"")
    res = cli("steps", "install", str(step))
    assert res.returncode == 0, res.stderr
    assert res.stdout == json.dumps({"revision": rev}, separators=(",", ":")).encode() + b"\n"
    assert [(r.method, r.path) for r in pv.requests] == [
        ("GET", "/objects"), ("GET", "/steps"), ("PUT", f"/steps/{rev}")]
    assert len(rev) == len("locals/") + 64


def test_install_relative_path(pv, cli, step):
    serve_listings(pv, [], [])
    pv.reply("PUT", f"/objects/{SHA_A}", body=b"")
    pv.reply("PUT", f"/objects/{SHA_B}", body=b"")
    pv.reply("PUT", "/steps/locals/rel", body=b"")
    res = cli("steps", "install", step.name, "locals/rel", cwd=str(step.parent))
    assert res.returncode == 0, res.stdout + res.stderr
    uploads = {r.path: r.body for r in pv.requests if r.method == "PUT"}
    assert uploads == {f"/objects/{SHA_A}": OBJ_A, f"/objects/{SHA_B}": OBJ_B, "/steps/locals/rel": STATE}


def test_install_skips_existing_revision(pv, cli, step):
    serve_listings(pv, [{"sha256": SHA_A, "size": "1"}, {"sha256": SHA_B, "size": "1"}],
                   [{"name": "locals/have", "date": "x", "commitmsg": "", "progress": {}}])
    res = cli("-m", "msg", "steps", "install", str(step), "locals/have")
    assert res.returncode == 0
    assert res.stdout == b'{"revision":"locals/have"}\n'
    assert [r.method for r in pv.requests] == ["GET", "GET"]


def test_install_tar_gz_suffix(pv, cli, tmp_path):
    archive = make_tgz(tmp_path / "s.tar.gz", {"json": STATE, "objects/": None})
    serve_listings(pv, [], [])
    pv.reply("PUT", "/steps/locals/t", body=b"")
    res = cli("steps", "install", str(archive), "locals/t")
    assert res.returncode == 0, res.stdout + res.stderr
    assert pv.requests[-1].body == STATE


def test_install_stops_at_failed_object(pv, cli, step):
    serve_listings(pv, [], [])
    pv.reply("PUT", f"/objects/{SHA_A}", status=507, body=b'{"Error":"Not enough disk space available"}')
    pv.reply("PUT", f"/objects/{SHA_B}", status=507, body=b'{"Error":"Not enough disk space available"}')
    res = cli("steps", "install", str(step), "locals/x")
    assert res.returncode == 48
    assert res.stdout == b""
    assert res.stderr == b'{"Error":"Not enough disk space available"}\n'
    assert [r.method for r in pv.requests] == ["GET", "PUT"]


def test_install_reports_state_rejection(pv, cli, step):
    serve_listings(pv, [{"sha256": SHA_A, "size": "1"}, {"sha256": SHA_B, "size": "1"}], [])
    pv.reply("PUT", "/steps/locals/x", status=422, body=b'{"Error":"Parser: State JSON has bad format"}')
    res = cli("-m", "m", "steps", "install", str(step), "locals/x")
    assert res.returncode == 255
    assert res.stderr == b'{"Error":"Parser: State JSON has bad format"}\n'
    assert b"revision" not in res.stdout
    assert pv.requests[-1].path == "/steps/locals/x"


def test_install_listing_failure(pv, cli, step):
    pv.reply("GET", "/objects", status=503, body=b'{"Error":"busy"}')
    res = cli("steps", "install", str(step), "locals/x")
    assert res.returncode == 75
    assert len(pv.requests) == 1


def test_install_unknown_format(pv, cli, tmp_path):
    path = tmp_path / "step.zip"
    path.write_bytes(b"PK")
    res = cli("steps", "install", str(path), "locals/x")
    assert res.returncode == 1
    assert res.stdout == b"ERROR: unknown file format\n"
    assert pv.requests == []


@pytest.mark.parametrize("members", [
    {"json": STATE},                                   # no objects/
    {"objects/": None, f"objects/{SHA_A}": OBJ_A},     # no json
    {"json": STATE, "objects/": None, "../evil": b"x"},
    {"/abs": b"x", "json": STATE, "objects/": None},
])
def test_install_wrong_contents(pv, cli, tmp_path, members):
    archive = make_tgz(tmp_path / "bad.tgz", members)
    res = cli("steps", "install", str(archive), "locals/x")
    assert res.returncode == 1
    assert res.stdout == b"ERROR: wrong contents of compressed step\n"
    assert pv.requests == []
    assert not (tmp_path / "evil").exists()


def test_install_symlink_member_rejected(pv, cli, tmp_path):
    archive = tmp_path / "link.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in {"json": STATE}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("objects")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc"
        tar.addfile(link)
    res = cli("steps", "install", str(archive), "locals/x")
    assert (res.returncode, res.stdout) == (1, b"ERROR: wrong contents of compressed step\n")


def test_install_corrupt_archive(pv, cli, tmp_path):
    archive = tmp_path / "corrupt.tgz"
    archive.write_bytes(b"this is not gzip at all")
    res = cli("steps", "install", str(archive), "locals/x")
    assert (res.returncode, res.stdout) == (1, b"ERROR: wrong contents of compressed step\n")
    assert pv.requests == []
