"""``pvcontrol steps install``: install a compressed step from the client.

pv-ctrl has no tarball endpoint, so the client unpacks the step (a state
file ``json`` plus an ``objects/`` directory named by SHA-256), uploads the
objects the device lacks and then the state JSON as a local revision.

Unlike upstream's script this works with relative paths, extracts into a
temporary directory that is always removed, refuses archive members that
would land outside it, matches object and revision names exactly instead
of as substrings, really defaults the revision name to
``locals/<sha256 of the file>``, and fails on the first HTTP error.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from typing import TYPE_CHECKING, Any, Iterable, Set

from pvcore_client import CHUNK_SIZE, Response

if TYPE_CHECKING:  # pragma: no cover
    import tarfile
from pvcontrol.context import CliError, Context, arg_bytes, json_body, url_part
from pvcontrol.transfer import OBJECT_HEADERS, Source, upload

_SUFFIXES = (".tgz", ".tar.gz")
BAD_FORMAT = "ERROR: unknown file format"
BAD_CONTENTS = "ERROR: wrong contents of compressed step"


class _HttpFailure(Exception):
    """A request of the install failed; its response decides the exit."""

    def __init__(self, resp: Response):
        super().__init__(resp.status)
        self.resp = resp


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file at *path*, read in pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fileobj:
        for piece in iter(lambda: fileobj.read(CHUNK_SIZE), b""):
            digest.update(piece)
    return digest.hexdigest()


def _check_members(members: Iterable[tarfile.TarInfo]) -> None:
    """Refuse anything but plain files and directories inside the archive."""
    for member in members:
        name = member.name
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts:
            raise CliError(BAD_CONTENTS, to_stdout=True)
        if not (member.isfile() or member.isdir()):
            raise CliError(BAD_CONTENTS, to_stdout=True)


def extract(archive: str, destination: str) -> None:
    """Unpack *archive* into *destination* after vetting every member.

    :raises CliError: unreadable archive or unsafe member.
    """
    import tarfile  # PERF: only `steps install` needs it; keep CLI start-up short

    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            _check_members(members)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(destination, members=members)
    except (tarfile.TarError, OSError, EOFError):
        raise CliError(BAD_CONTENTS, to_stdout=True) from None


def _names(listing: Any, key: str) -> Set[str]:
    """The *key* values of a JSON listing of objects; a malformed listing
    yields no names, so everything is (re)uploaded, which the server treats
    idempotently."""
    if not isinstance(listing, list):
        return set()
    return {item[key] for item in listing if isinstance(item, dict) and isinstance(item.get(key), str)}


def _listing(ctx: Context, path: str, key: str) -> Set[str]:
    resp = ctx.request("GET", path)
    if not resp.ok:
        raise _HttpFailure(resp)
    try:
        return _names(resp.json(), key)
    except ValueError:
        return set()


def _upload_objects(ctx: Context, directory: str) -> None:
    present = _listing(ctx, "/objects", "sha256")
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name in present or not os.path.isfile(path):
            continue
        resp = upload(ctx, f"/objects/{url_part(name)}", Source(path=path), OBJECT_HEADERS, label=name[:12])
        if not resp.ok:
            raise _HttpFailure(resp)


def _upload_state(ctx: Context, state: str, rev: str) -> None:
    if rev in _listing(ctx, "/steps", "name"):
        return
    url = f"/steps/{url_part(rev)}"
    resp = upload(ctx, url, Source(path=state))
    if not resp.ok:
        raise _HttpFailure(resp)
    if ctx.options.message:
        resp = ctx.request("PUT", f"{url}/commitmsg", arg_bytes(ctx.options.message))
        if not resp.ok:
            raise _HttpFailure(resp)


def install_step(ctx: Context, archive: str, rev: str = "") -> int:
    """Install the compressed step *archive* as revision *rev*.

    Prints ``{"revision":"<rev>"}`` and returns 0 when every request
    succeeded; otherwise reports the failing response (stderr, exit code
    per :mod:`pvcontrol.result`).
    """
    if not archive.endswith(_SUFFIXES):
        raise CliError(BAD_FORMAT, to_stdout=True)
    archive = os.path.abspath(archive)
    if not os.path.isfile(archive):
        raise CliError(f"ERROR: cannot open {archive}: no such file", to_stdout=True)
    if not rev:
        rev = posixpath.join("locals", file_sha256(archive))

    with tempfile.TemporaryDirectory(prefix="pvr.") as workdir:
        extract(archive, workdir)
        state = os.path.join(workdir, "json")
        objects = os.path.join(workdir, "objects")
        if not os.path.isfile(state) or not os.path.isdir(objects):
            raise CliError(BAD_CONTENTS, to_stdout=True)
        try:
            _upload_objects(ctx, objects)
            _upload_state(ctx, state, rev)
        except _HttpFailure as failure:
            return ctx.report(failure.resp)

    ctx.out.write(json_body({"revision": rev}) + b"\n")
    ctx.out.flush()
    return 0
