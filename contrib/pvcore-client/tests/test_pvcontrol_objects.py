"""pvcontrol objects put/get: streaming uploads and safe downloads."""

from __future__ import annotations

import hashlib
import io
import os

from pvcontrol.progress import ProgressBar, progress_for

MIB = 1 << 20


def test_put_streams_5mib_file(pv, cli, tmp_path):
    data = os.urandom(5 * MIB + 123)
    sha = hashlib.sha256(data).hexdigest()
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    pv.reply("PUT", f"/objects/{sha}", body=b"")
    res = cli("objects", "put", str(src), sha)
    assert res.returncode == 0, res.stderr
    # stderr is a pipe here: no progress bar may leak into it.
    assert (res.stdout, res.stderr) == (b"\n", b"")
    [req] = pv.requests
    assert (req.method, req.path) == ("PUT", f"/objects/{sha}")
    assert req.header("Content-Length") == str(len(data))
    assert req.header("Content-Type") == "application/octet-stream"
    assert req.header("Transfer-Encoding") is None
    assert hashlib.sha256(req.body).hexdigest() == sha


def test_put_from_stdin_with_size(pv, cli):
    data = b"hello object\n"
    sha = hashlib.sha256(data).hexdigest()
    pv.reply("PUT", f"/objects/{sha}", body=b"")
    res = cli("objects", "put", f"-{len(data)}", sha, stdin=data + b"trailing junk")
    assert res.returncode == 0
    [req] = pv.requests
    assert req.body == data
    assert req.header("Content-Length") == str(len(data))


def test_put_from_stdin_short_input_fails(pv, cli):
    res = cli("objects", "put", "-100", "a" * 64, stdin=b"only ten b")
    assert res.returncode == 1
    assert b"ended after 10 of 100 bytes" in res.stderr


def test_put_whole_stdin(pv, cli):
    data = os.urandom(3 * MIB)
    sha = hashlib.sha256(data).hexdigest()
    pv.reply("PUT", f"/objects/{sha}", body=b"")
    res = cli("objects", "put", "-", sha, stdin=data)
    assert res.returncode == 0
    assert pv.requests[0].body == data


def test_put_bad_checksum_exit_60(pv, cli, tmp_path):
    src = tmp_path / "bad.txt"
    src.write_bytes(b"bad sha test")
    sha = "a" * 64
    pv.reply("PUT", f"/objects/{sha}", status=422, body=b'{"Error":"Object has bad checksum"}')
    res = cli("objects", "put", str(src), sha)
    assert res.returncode == 60
    assert res.stderr == b'{"Error":"Object has bad checksum"}\n'


def test_put_missing_file(pv, cli, tmp_path):
    res = cli("objects", "put", str(tmp_path / "absent"), "a" * 64)
    assert res.returncode == 1
    assert res.stderr.startswith(b"ERROR: cannot open")
    assert pv.requests == []


def test_put_bad_stdin_size_is_usage_error(pv, cli):
    res = cli("objects", "put", "-12x", "a" * 64)
    assert res.returncode == 1
    assert b"Usage: pvcontrol objects" in res.stderr


def test_get_to_file_is_intact(pv, cli, tmp_path):
    data = os.urandom(2 * MIB + 7)
    sha = hashlib.sha256(data).hexdigest()
    pv.reply("GET", f"/objects/{sha}", body=data, content_type="application/octet-stream", chunked=True)
    target = tmp_path / "down.bin"
    res = cli("-f", str(target), "objects", "get", sha)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b""
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha
    assert not (tmp_path / "down.bin.part").exists()


def test_get_to_stdout_is_raw(pv, cli):
    data = b"\x00\x01binary\n\n"
    pv.reply("GET", "/objects/" + "b" * 64, body=data, content_type="application/octet-stream")
    res = cli("objects", "get", "b" * 64)
    assert res.returncode == 0
    assert res.stdout == data


def test_get_failure_writes_nothing(pv, cli, tmp_path):
    target = tmp_path / "down.bin"
    pv.reply("GET", "/objects/" + "c" * 64, status=400, body=b'{"Error":"Request has bad object name"}')
    res = cli("-f", str(target), "objects", "get", "c" * 64)
    assert res.returncode == 255
    assert res.stderr == b'{"Error":"Request has bad object name"}\n'
    assert not target.exists()
    assert not (tmp_path / "down.bin.part").exists()


def test_get_failure_keeps_existing_file(pv, cli, tmp_path):
    target = tmp_path / "down.bin"
    target.write_bytes(b"previous")
    pv.reply("GET", "/objects/" + "c" * 64, status=400, body=b'{"Error":"Request has bad object name"}')
    res = cli("-f", str(target), "objects", "get", "c" * 64)
    assert res.returncode == 255
    assert target.read_bytes() == b"previous"


def test_get_failure_on_stdout_mode(pv, cli):
    pv.reply("GET", "/objects/x", status=400, body=b'{"Error":"Request has bad object name"}')
    res = cli("objects", "get", "x")
    assert (res.returncode, res.stdout) == (255, b"")
    assert res.stderr == b'{"Error":"Request has bad object name"}\n'


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_terminals():
    assert progress_for(io.StringIO()) is None
    assert isinstance(progress_for(_Tty()), ProgressBar)


def test_progress_bar_draws_and_finishes():
    stream = _Tty()
    bar = ProgressBar(stream, "obj", interval=0)
    bar(0, 4 * MIB)
    bar(2 * MIB, 4 * MIB)
    bar(4 * MIB, 4 * MIB)
    text = stream.getvalue()
    assert "\robj [" + " " * 30 + "]   0.0% 0.0/4.0 MiB" in text
    assert " 50.0% 2.0/4.0 MiB" in text
    assert text.endswith("[" + "#" * 30 + "] 100.0% 4.0/4.0 MiB\n")
