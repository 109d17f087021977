"""Black-box: a factory image boots its revision 0 on its very first start (issue 25
point 6, docs/protocol.md §D1.4). Storage holds only upstream's factory layout,
``trails/0/.pvr/json`` and ``objects/``: no ``current`` link, no boot record, no progress."""
import json
import os

import pytest

from pvcore_demo import demo_state
from pvcore.testing import short_tempdir, wait_until

pytestmark = pytest.mark.gunicorn


def factory_layout(base):
    state, objects = demo_state()
    storage = os.path.join(base, "storage")
    os.makedirs(os.path.join(storage, "objects"))
    for sha, data in objects.items():
        with open(os.path.join(storage, "objects", sha), "wb") as fh:
            fh.write(data)
    os.makedirs(os.path.join(storage, "trails", "0", ".pvr"))
    with open(os.path.join(storage, "trails", "0", ".pvr", "json"), "w") as fh:
        json.dump(state, fh)
    return state


def get(server, path):
    status, _, body = server.request("GET", path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def test_factory_image_boots_revision_0_on_first_start(start_gunicorn):
    base = short_tempdir()
    state = factory_layout(base)
    server = start_gunicorn(base=base)
    assert get(server, "/_pvcore/health")["revision"] == "0"
    names = {key.split("/")[0] for key in state if key.endswith("/run.json") and not key.startswith("bsp/")}
    containers = wait_until(
        lambda: (lambda cs: cs if {c["name"] for c in cs} == names and all(c["status"] in ("STARTED", "READY") for c in cs) else None)(
            get(server, "/containers")), timeout=20, message="the factory revision's containers to run")
    assert len(containers) == len(names)
    assert get(server, "/steps/current") == state
    progress = get(server, "/steps/0/progress")
    assert (progress["status"], progress["status-msg"]) == ("DONE", "Factory revision")
