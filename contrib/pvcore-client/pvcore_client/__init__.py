"""pvcore-client: Pantavisor's pv-ctrl control socket, from Python and from the shell.

The standard library only, so that it installs in a minimal container without
the server's dependencies (Falcon, gunicorn, pluggy, structlog)::

    from pvcore_client import PvClient, default_socket_path

    with PvClient(default_socket_path()) as client:
        print(client.containers())

The ``pvcontrol`` command (package :mod:`pvcontrol`) is built on it.
"""

from __future__ import annotations

from pvcore_client.client import CHUNK_SIZE, DEFAULT_TIMEOUT, PvClient
from pvcore_client.response import Headers, NoResponseError, Response
from pvcore_client.sockets import default_socket_path, is_socket

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_TIMEOUT",
    "Headers",
    "NoResponseError",
    "PvClient",
    "Response",
    "UnixHTTPConnection",
    "default_socket_path",
    "is_socket",
]


def __getattr__(name):
    # PERF: http.client only for callers that ask for it (see pvcore_client.client).
    if name == "UnixHTTPConnection":
        from pvcore_client import client

        return client.UnixHTTPConnection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
