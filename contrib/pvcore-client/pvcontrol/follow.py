"""pvcontrol commands that follow the device: ``events``, ``logs -f`` and
``steps show-progress --follow``.

Each opens its own connection for the stream (``/_pvcore/events``,
``/_pvcore/logs/<name>?follow=1``), reads it until the server ends it, and
never polls.
"""

from __future__ import annotations

import http.client
import json
from typing import Iterator, List, Optional
from urllib.parse import urlencode

from pvcore_client import NoResponseError, Response, UnixHTTPConnection
from pvcontrol.context import CliError, Context, url_part

#: ``show-progress --follow`` exit statuses.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 2
SUCCEEDED = ("DONE", "UPDATED")
FAILED = ("ERROR", "WONTGO")


class Stream:
    """A streaming GET on a connection of its own (no read timeout)."""

    def __init__(self, ctx: Context, path: str):
        self.ctx = ctx
        self.conn = UnixHTTPConnection(ctx.client.socket_path, timeout=None)
        ctx.trace_request("GET", path)
        try:
            self.conn.request("GET", path, headers={"Content-Length": "0"})
            self.resp = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise NoResponseError(f"GET {path}: {exc}") from exc
        self.error: Optional[Response] = None
        if self.resp.status != 200:
            body = self.resp.read()
            self.error = Response(self.resp.status, self.resp.reason, self.resp.headers, body)
            ctx.trace_response(self.error)

    def lines(self) -> Iterator[bytes]:
        """Body lines as they arrive, until the server ends the stream."""
        while True:
            line = self.resp.readline()
            if not line:
                return
            yield line

    def chunks(self) -> Iterator[bytes]:
        """Body bytes as they arrive."""
        while True:
            data = self.resp.read1(65536)
            if not data:
                return
            yield data

    def close(self) -> None:
        self.conn.close()


def _write(ctx: Context, data: bytes) -> None:
    ctx.out.write(data)
    ctx.out.flush()


def _events_path(types: List[str], since: Optional[str] = None) -> str:
    query = {}
    if types:
        query["types"] = ",".join(types)
    if since is not None:
        query["since"] = since
    return "/_pvcore/events" + ("?" + urlencode(query) if query else "")


def events(ctx: Context, types: List[str], since: Optional[str]) -> int:
    """Print every event (one JSON line each) until interrupted."""
    stream = Stream(ctx, _events_path(types, since))
    try:
        if stream.error is not None:
            return ctx.report(stream.error)
        for line in stream.lines():
            _write(ctx, line)
    finally:
        stream.close()
    raise CliError("ERROR: the event stream ended")


def logs(ctx: Context, name: str, follow: bool, lines: Optional[int]) -> int:
    """Print a container's console log; with ``follow``, keep printing."""
    query = {}
    if lines is not None:
        query["tail"] = str(lines)
    path = f"/_pvcore/logs/{url_part(name)}"
    if not follow:
        return ctx.report(ctx.request("GET", path + ("?" + urlencode(query) if query else "")))
    query["follow"] = "1"
    stream = Stream(ctx, path + "?" + urlencode(query))
    try:
        if stream.error is not None:
            return ctx.report(stream.error)
        for data in stream.chunks():
            _write(ctx, data)
    finally:
        stream.close()
    raise CliError("ERROR: the log stream ended")


def _outcome(progress: dict) -> Optional[int]:
    status = progress.get("status") if isinstance(progress, dict) else None
    if status in SUCCEEDED:
        return EXIT_SUCCEEDED
    if status in FAILED:
        return EXIT_FAILED
    return None


def show_progress(ctx: Context, rev: str) -> int:
    """Print revision ``rev``'s progress, then each change, until it ends.

    Exits 0 on DONE/UPDATED, 2 on ERROR/WONTGO. The stream is opened before
    the first snapshot is read, so a change between the two is not lost.
    """
    stream = Stream(ctx, _events_path(["revision.progress"]))
    try:
        if stream.error is not None:
            return ctx.report(stream.error)
        resp = ctx.request("GET", f"/steps/{url_part(rev)}/progress")
        if resp.status != 200:
            return ctx.report(resp)
        progress = resp.json()
        _write(ctx, json.dumps(progress, separators=(",", ":")).encode() + b"\n")
        outcome = _outcome(progress)
        if outcome is not None:
            return outcome
        for line in stream.lines():
            event = json.loads(line)
            if event.get("type") == "pvcore.gap":
                # Changes were lost to this watcher: read the current state.
                resp = ctx.request("GET", f"/steps/{url_part(rev)}/progress")
                progress = resp.json() if resp.status == 200 else {}
            elif event.get("subject") == rev:
                progress = event.get("data") or {}
            else:
                continue
            _write(ctx, json.dumps(progress, separators=(",", ":")).encode() + b"\n")
            outcome = _outcome(progress)
            if outcome is not None:
                return outcome
    finally:
        stream.close()
    raise CliError("ERROR: the event stream ended before the revision finished")
