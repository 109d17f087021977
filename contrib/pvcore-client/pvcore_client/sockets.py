"""Where the pv-ctrl socket is: :func:`default_socket_path`, :func:`is_socket`."""

from __future__ import annotations

import os
import stat

# Upstream's fixed locations, tried in this order when nothing else applies.
_UPSTREAM_SOCKETS = ("/run/pantavisor/pv/pv-ctrl", "/pv/pv-ctrl")
_CONTAINER_SOCKET = "/pantavisor/pv-ctrl"
_CHECKOUT_SOCKET = os.path.join("var", "run", "pv-ctrl")


def is_socket(path: str) -> bool:
    """True when *path* exists and is a Unix socket (symlinks followed)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _checkout_socket(start: str):
    """The ``var/run/pv-ctrl`` socket of the source checkout enclosing
    *start*, so that running the CLI from a development tree talks to the
    server started from that tree."""
    here = os.path.join(start, _CHECKOUT_SOCKET)
    if is_socket(here):
        return here
    directory = start
    while True:
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
        candidate = os.path.join(directory, _CHECKOUT_SOCKET)
        if os.path.isfile(os.path.join(directory, "setup.cfg")) and is_socket(candidate):
            return candidate


def default_socket_path(environ=None, cwd=None) -> str:
    """Pick the pv-ctrl socket to use when none was given explicitly.

    In order: ``$PVCONTROL_SOCKET``; a ``var/run/pv-ctrl`` socket in *cwd*
    or in the nearest parent directory that is a checkout (holds
    ``setup.cfg``); upstream's ``/run/pantavisor/pv/pv-ctrl`` then
    ``/pv/pv-ctrl`` if they are sockets; finally ``/pantavisor/pv-ctrl``,
    where containers see the socket (returned even if it does not exist, so
    the caller can report it).

    *environ* and *cwd* default to the process environment and working
    directory; they are parameters so the lookup can be tested.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("PVCONTROL_SOCKET")
    if explicit:
        return explicit
    try:
        start = os.path.abspath(cwd if cwd is not None else os.getcwd())
    except OSError:  # cwd deleted under us
        start = None
    if start is not None:
        found = _checkout_socket(start)
        if found:
            return found
    for candidate in _UPSTREAM_SOCKETS:
        if is_socket(candidate):
            return candidate
    return _CONTAINER_SOCKET
