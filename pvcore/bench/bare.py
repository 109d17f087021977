"""The baseline app: bare Falcon returning fixed bytes, no plugins, no middleware.

Served by the very same gunicorn configuration as pvcore (``PVCORE_WSGI_APP=
pvcore.bench.bare:app``), so the difference is the cost of pvcore's stack.
"""
import os

import falcon

_BODY_FILE = os.environ.get("PVCORE_BENCH_BODY_FILE")
BODY = open(_BODY_FILE, "rb").read() if _BODY_FILE else b"[]"


class Fixed:
    def on_get(self, req, resp, path=""):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = BODY


app = falcon.App()
app.add_sink(Fixed().on_get, prefix="/")
