"""``GET /_pvcore/logs/{name}[?tail=N][&follow=1]`` (mgmt): a container's console log.

The console log is the runtime's: the built-in one appends a container's
output to ``<storage>/logs/<rev>/<name>/console.log``; another runtime may say
where its log is with ``console_log(container)``. With ``follow=1`` the
response is a stream (docs/plugins.md, "Streams"): the hub takes the
connection over and sends new lines as the container writes them, reading
the file only as fast as the client reads.
"""
from __future__ import annotations

import os

from pvcore.app import takes_query
from pvcore.errors import BadRequest, NotFound, PvError
from pvcore.query import int_param
from pvcore.sources import FileFollower, tail_offset
from pvcore.streams import open_stream

from .runtime import console_log_path

TEXT = "text/plain; charset=utf-8"
MAX_TAIL = 100_000


def _flag(value) -> bool:
    if value in (None, "0", "false", "no"):
        return False
    if value in ("", "1", "true", "yes"):
        return True
    raise BadRequest("Invalid follow")


class ContainerLog:
    """The console log of a container of the running revision."""

    def __init__(self, core, engine):
        self._core = core
        self._engine = engine

    def log_path(self, container) -> str:
        custom = getattr(self._engine.runtime, "console_log", None)
        if custom is not None:
            return custom(container)
        return console_log_path(self._core.settings.storage_dir, container.rev, container.name)

    @takes_query("tail", "follow")
    def on_get(self, req, resp, name):
        if not self._engine.loaded:
            raise PvError("State not loaded yet", 500)
        container = self._engine.container(name)
        if container is None:
            raise NotFound("Container not found")
        tail = int_param(req, "tail", MAX_TAIL)
        follow = _flag(req.params.get("follow"))
        path = self.log_path(container)
        offset = tail_offset(path, tail) if tail is not None else 0
        if follow and open_stream(self._core, req, resp, FileFollower(path, offset), TEXT, "logs:" + name):
            return
        resp.content_type = TEXT
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            resp.data = b""
            return
        size = os.fstat(fh.fileno()).st_size
        fh.seek(min(offset, size))
        resp.set_stream(fh, size - min(offset, size))
