"""How a pv-ctrl response becomes output and an exit status.

These rules are upstream pvcontrol's, which scripts depend on: a 200 body
goes to stdout and exits 0; anything else goes to stderr with an exit code
derived from the status and from a few exact error bodies.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from pvcore_client import Response

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_SPACE = 48
EXIT_BAD_CHECKSUM = 60
EXIT_VERIFY_FAILED = 70
EXIT_BUSY = 75
EXIT_HTTP_ERROR = 255

# Matched byte for byte, as upstream does; any other error body is 255.
_BODY_CODES = {
    b'{"Error":"Not enough disk space available"}': EXIT_NO_SPACE,
    b'{"Error":"Object has bad checksum"}': EXIT_BAD_CHECKSUM,
    b'{"Error":"State verification has failed"}': EXIT_VERIFY_FAILED,
}


def _content(body: bytes) -> bytes:
    # Upstream compared the body after $(...) had stripped its trailing
    # newlines, so a body that ends in one still matches.
    return body.rstrip(b"\n")


def _line(body: bytes) -> bytes:
    # The body as the server sent it, newline-terminated (an empty body
    # prints an empty line, as upstream's echo did).
    return body if body.endswith(b"\n") else body + b"\n"


def exit_code(resp: Response) -> int:
    """The pvcontrol exit status for *resp*: 0 for 200, 75 for 503, 48/60/70
    for the matching error bodies, else 255."""
    if resp.status == 200:
        return EXIT_OK
    if resp.status == 503:
        return EXIT_BUSY
    return _BODY_CODES.get(_content(resp.body), EXIT_HTTP_ERROR)


def pretty_json(body: bytes) -> bytes:
    """*body* re-indented if it is JSON, unchanged otherwise."""
    import json

    try:
        data = json.loads(body.decode("utf-8"))
    except ValueError:
        return body
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def report(resp: Response, out: BinaryIO, err: BinaryIO, pretty: bool = False) -> int:
    """Print *resp* the upstream way and return the exit status."""
    code = exit_code(resp)
    body = resp.body
    if code == EXIT_OK:
        if pretty and body.strip():
            body = pretty_json(body)
        out.write(_line(body))
        out.flush()
    else:
        err.write(_line(body))
        err.flush()
    return code
