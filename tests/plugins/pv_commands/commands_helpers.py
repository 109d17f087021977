"""Helpers shared by the black-box /commands tests (a demo device over a real socket)."""
import json


def get(server, path):
    """GET ``path``, which must answer 200; its JSON body."""
    status, _, body = server.request("GET", path)
    assert status == 200, (path, body)
    return json.loads(body)


def command(server, op, payload=""):
    """POST one command; (status, headers, body)."""
    return server.request("POST", "/commands", json.dumps({"op": op, "payload": payload}))
