"""``GET /buildinfo``: the build manifest, as plain text (docs/protocol.md §7.14).

The manifest is the ``buildinfo`` setting (empty by default, as CMake builds
of Pantavisor embed an empty string).
"""
import falcon

from pvcore import hookimpl


class BuildInfo:
    """The manifest the device was built from; mgmt only."""

    def __init__(self, manifest: str):
        self._body = manifest.encode("utf-8")

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.data = self._body


@hookimpl
def pvcore_routes(core):
    return [("/buildinfo", BuildInfo(core.settings.buildinfo))]
