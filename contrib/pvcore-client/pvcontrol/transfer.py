"""File transfers: object upload/download and state JSON upload."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional, Tuple

from pvcore_client import CHUNK_SIZE, NoResponseError, Response
from pvcontrol.context import CliError, Context, UsageError, arg_bytes, url_part
from pvcontrol.progress import progress_for

# Objects are opaque bytes; upstream labelled them so, unlike every other
# request which defaults to JSON.
OBJECT_HEADERS = {"Content-Type": "application/octet-stream"}

# Stdin of unknown length is spooled to find its size; beyond this it
# spills to a temporary file instead of memory.
_SPOOL_MEMORY = 8 * CHUNK_SIZE


@dataclass(frozen=True)
class Source:
    """Where an upload's bytes come from: a file *path*, or stdin when
    *path* is None (with *size* bytes, or until EOF when *size* is None)."""

    path: Optional[str] = None
    size: Optional[int] = None


def parse_source(word: str, group: str) -> Source:
    """Interpret an upload argument: ``-<size>`` is that many bytes of
    stdin, ``-`` all of stdin, anything else a file path."""
    if word == "-":
        return Source()
    if word.startswith("-"):
        digits = word[1:]
        if not digits.isdigit():
            raise UsageError(group, f"bad stdin size: {word}")
        return Source(size=int(digits))
    return Source(path=word)


@contextlib.contextmanager
def open_source(ctx: Context, source: Source) -> Iterator[Tuple[BinaryIO, int]]:
    """Yield ``(fileobj, size)`` for *source*."""
    if source.path is not None:
        try:
            fileobj = open(source.path, "rb")
        except OSError as exc:
            raise CliError(f"ERROR: cannot open {source.path}: {exc.strerror}") from None
        with fileobj:
            yield fileobj, os.fstat(fileobj.fileno()).st_size
    elif source.size is not None:
        yield ctx.stdin, source.size
    else:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY) as spool:
            shutil.copyfileobj(ctx.stdin, spool, CHUNK_SIZE)
            size = spool.tell()
            spool.seek(0)
            yield spool, size


def upload(ctx: Context, url: str, source: Source, headers: Optional[dict] = None, label: str = "") -> Response:
    """Stream *source* to *url* with PUT, with a progress bar on a terminal."""
    with open_source(ctx, source) as (fileobj, size):
        ctx.trace_request("PUT", url)
        bar = progress_for(ctx.err_text, label)
        try:
            resp = ctx.client.put_file(url, fileobj, size, progress=bar, headers=headers)
        except ValueError as exc:
            raise CliError(f"ERROR: {exc}") from None
    ctx.trace_response(resp)
    return resp


def put_object(ctx: Context, source: Source, sha: str) -> int:
    """``objects put``: upload one object and report the server's answer."""
    resp = upload(ctx, f"/objects/{url_part(sha)}", source, OBJECT_HEADERS, label=sha[:12])
    return ctx.report(resp)


def get_object(ctx: Context, sha: str) -> int:
    """``objects get``: stream an object to stdout or to the ``-f`` file.

    The file is written as ``FILE.part`` and renamed only after a complete
    200 download, so a failed download never leaves a plausible-looking
    object behind.
    """
    url = f"/objects/{url_part(sha)}"
    ctx.trace_request("GET", url)
    target = ctx.options.output
    if not target:
        resp = ctx.client.stream_get(url, ctx.out)
        ctx.out.flush()
    else:
        partial = target + ".part"
        try:
            fileobj = open(partial, "wb")
        except OSError as exc:
            raise CliError(f"ERROR: cannot write {partial}: {exc.strerror}") from None
        try:
            with fileobj:
                resp = ctx.client.stream_get(url, fileobj)
        except (NoResponseError, OSError):
            _remove(partial)
            raise
        if resp.ok:
            os.replace(partial, target)
        else:
            _remove(partial)
    ctx.trace_response(resp)
    if resp.ok:
        return 0
    return ctx.report(resp)


def put_step(ctx: Context, path: str, rev: str) -> int:
    """``steps put``: upload a state JSON, then the ``-m`` commit message.

    When a message is sent, its response is the one reported, as upstream
    does.
    """
    url = f"/steps/{url_part(rev)}"
    if path == "-":
        # State JSON is small; reading it lets the request carry an exact
        # Content-Length.
        resp = ctx.request("PUT", url, ctx.stdin.read())
    else:
        resp = upload(ctx, url, Source(path=path))
    if resp.status == 200 and ctx.options.message:
        resp = ctx.request("PUT", f"{url}/commitmsg", arg_bytes(ctx.options.message))
    return ctx.report(resp)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
