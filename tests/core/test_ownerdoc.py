"""docs/architecture.md's owner tables are the plugins' declarations, and they name
every file and folder pvcore creates."""
import json
import os

import pytest

from pvcore_dev import ownerdoc
from pvcore.testing import wait_until

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "architecture.md")
FINAL = ("UPDATED", "DONE", "WONTGO", "ERROR")
#: upstream's default groups with a 1 s stable_timeout (the commit waits for it)
QUICK_GROUPS = os.path.join(os.path.dirname(__file__), "..", "plugins", "pv_steps", "groups_quick.json")


def test_committed_owner_tables_are_the_declarations():
    with open(DOC) as fh:
        text = fh.read()
    assert ownerdoc.update(text, ownerdoc.builtin_registry()) == text, \
        "run: python -m pvcore_dev.ownerdoc docs/architecture.md"


def unowned(registry, root, marker):
    """Every path below ``root`` that no declaration covers (shared layout folders aside)."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(folder, name), root)
            path = f"{marker}/{rel}"
            if registry.path_owner(path) is None and not registry.is_layout(path):
                found.append(path)
    return found


@pytest.mark.gunicorn
def test_every_path_a_local_run_of_the_demo_creates_is_owned(start_gunicorn):
    server = start_gunicorn(demo=True, env={"PVCORE_UPDATE_COMMIT_DELAY": "0.3",
                                                 "PVCORE_DEFAULT_GROUPS_FILE": QUICK_GROUPS})

    def get(path):
        status, _, body = server.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    state = get("/steps/0")
    for key in [key for key in state if key.endswith("/run.json")]:  # every container restarts
        state[key] = dict(state[key], **{"x-owned-test": "1"})
    before = get("/_pvcore/health")["events"]
    assert server.request("PUT", "/steps/locals/owned", json.dumps(state))[0] == 200
    assert server.request("PUT", "/user-meta/site.room", b"lab")[0] == 200
    status, _, body = server.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": "locals/owned"}))
    assert status == 200, body
    wait_until(lambda: get("/steps/locals/owned/progress")["status"] in FINAL, timeout=40)
    after = get("/_pvcore/health")["events"]
    events, calls = (after[k] - before[k] for k in ("delivered", "listener_calls"))
    # Events go to their subscribers only: each went to all nine listeners (58 events, 522 calls).
    # NOTE: per event, not in all: a loaded machine makes more events (slower starts, more status).
    assert events > 30 and calls < 3 * events, (events, calls)
    registry = ownerdoc.builtin_registry()
    assert unowned(registry, server.storage_dir, "<storage>") + unowned(registry, server.run_dir, "<run>") == []
    open(os.path.join(server.storage_dir, "stray"), "w").close()  # the check can fail
    assert unowned(registry, server.storage_dir, "<storage>") == ["<storage>/stray"]
