"""State shared by every pvcontrol command: options, streams and client."""

from __future__ import annotations

import os
import sys

from pvcontrol import result

# PERF: no typing, dataclasses, json or urllib at start-up: pvcontrol is a
# short-lived process and importing them would cost more than its request.
# Annotations are strings; type checkers still see these imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Callable, Mapping, Optional, TextIO

    from pvcore_client import PvClient, Response


class UsageError(Exception):
    """Bad command line; *group* names the usage text to show (None = main)."""

    def __init__(self, group: Optional[str] = None, detail: str = ""):
        super().__init__(detail or f"usage error in {group or 'pvcontrol'}")
        self.group = group
        self.detail = detail


class HelpRequested(UsageError):
    """``--help`` was asked for: usage on stdout, exit 0."""


class CliError(Exception):
    """A failure reported as one ``ERROR: ...`` line and an exit status.

    *to_stdout* follows upstream, which printed some errors on stdout.
    """

    def __init__(self, message: str, code: int = result.EXIT_ERROR, to_stdout: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.to_stdout = to_stdout


class Options:
    """Global options given before the command."""

    def __init__(self, socket: Optional[str] = None, output: Optional[str] = None, message: Optional[str] = None,
                 verbose: bool = False, pretty: bool = False):
        self.socket = socket
        self.output = output
        self.message = message
        self.verbose = verbose
        self.pretty = pretty


class Action:
    """A parsed command: *run* performs it and returns the exit status.

    *own_output* marks commands that handle ``-f`` themselves (``objects
    get`` writes the file only once the download succeeded).
    """

    def __init__(self, run: Callable[["Context"], int], own_output: bool = False):
        self.run = run
        self.own_output = own_output


class Context:
    """Everything an :class:`Action` needs while it runs."""

    def __init__(self, options: Options, client: PvClient, out: BinaryIO, err: BinaryIO,
                 err_text: Optional[TextIO] = None, stdin: Optional[BinaryIO] = None):
        self.options = options
        self.client = client
        self.out = out
        self.err = err
        self.err_text = sys.stderr if err_text is None else err_text
        self.stdin = sys.stdin.buffer if stdin is None else stdin

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """Send a request through the shared client, tracing it with -v."""
        self.trace_request(method, path)
        resp = self.client.request(method, path, body=body, headers=headers)
        self.trace_response(resp)
        return resp

    def trace_request(self, method: str, path: str) -> None:
        """With -v, note the request line on stderr."""
        if self.options.verbose:
            self.err_text.write(f"> {method} {path}\n")
            self.err_text.flush()

    def trace_response(self, resp: Response) -> None:
        """With -v, note the status line on stderr."""
        if self.options.verbose:
            self.err_text.write(f"< {resp.status} {resp.reason}\n")
            self.err_text.flush()

    def report(self, resp: Response) -> int:
        """Print *resp* the upstream way; return the exit status."""
        return result.report(resp, self.out, self.err, pretty=self.options.pretty)


def arg_bytes(text: str) -> bytes:
    """A command-line argument as the bytes the user typed."""
    return os.fsencode(text)


def url_part(text: str) -> str:
    """Percent-quote a name for a URL path, keeping ``/`` (``locals/x``)."""
    from urllib.parse import quote

    return quote(os.fsencode(text), safe="/")


def json_body(obj: Any) -> bytes:
    """Compact JSON, the form upstream sent (``{"action":"stop"}``)."""
    import json

    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape"
    )
