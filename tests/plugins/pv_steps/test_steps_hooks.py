"""The hooks other plugins drive: running revision, boot record, progress, commit, factory, GC."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

import pv_steps
from pv_steps.model import build
from pvcore import hookimpl
from pvcore.ownership import Owns
from steps_helpers import SHA_A, SHA_B, make_rev, minimal_state, point_current, trail


def boot_record(storage):
    with open(os.path.join(storage, "boot", "pv.json")) as fh:
        return json.load(fh)


@pytest.fixture
def storage(tmp_path):
    path = str(tmp_path / "storage")
    make_rev(path, "0", minimal_state(**{"bsp/kernel.img": SHA_A}))
    point_current(path, "0")
    return path


def test_running_revision_state_and_objects(steps_core, storage):
    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/x", minimal_state(**{"a/f": SHA_B, "a/run.json": {"name": "a"}, "note": "short"}))
    assert core.hook.pv_steps_running_revision(core=core) == "0"
    assert core.hook.pv_steps_running_revision(core=core) == "0"
    current = core.hook.pv_steps_revision(core=core, rev="current")
    assert current == build("0", minimal_state(**{"bsp/kernel.img": SHA_A}))
    assert current.rev == "0" and current.shas() == (SHA_A,)
    # one model per state file, shared by every consumer
    assert core.hook.pv_steps_revision(core=core, rev="0") is current
    local = core.hook.pv_steps_revision(core=core, rev="locals/x")
    assert list(local.containers) == ["a"] and dict(local.containers["a"].objects) == {"f": SHA_B}
    assert core.stash[pv_steps.STEPS].trails.objects("locals/x") == [SHA_B]
    assert core.stash[pv_steps.STEPS].trails.objects("0") == [SHA_A]
    for rev in ("9", "..", "locals/nope", "locals"):
        assert core.hook.pv_steps_revision(core=core, rev=rev) is None
        assert core.stash[pv_steps.STEPS].trails.objects(rev) is None


def test_first_start_records_the_current_revision_as_committed(steps_core, storage):
    make_rev(storage, "3")
    point_current(storage, "3")
    steps_core(storage_dir=storage)
    assert boot_record(storage) == {"pv_rev": "3", "pv_try": None, "try_once": False}


def test_set_running_repoints_current_and_records_the_try(steps_core, storage):
    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/new")
    assert pv_steps.set_running(core, rev="locals/new") is True
    assert os.readlink(trail(storage, "current")) == "locals/new"
    assert core.hook.pv_steps_running_revision(core=core) == "locals/new"
    assert boot_record(storage) == {"pv_rev": "0", "pv_try": "locals/new", "try_once": False}
    assert pv_steps.set_running(core, rev="locals/missing") is None
    assert core.hook.pv_steps_running_revision(core=core) == "locals/new"
    # Going back to the committed revision is a rollback: no try left.
    assert pv_steps.set_running(core, rev="0") is True
    assert boot_record(storage)["pv_try"] is None
    assert not [n for n in os.listdir(trail(storage)) if n.endswith(".tmp")]


def test_try_once_is_forgotten_after_a_restart(steps_core, storage):
    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/once")
    pv_steps.set_running(core, rev="locals/once", try_once=True)
    assert boot_record(storage)["try_once"] is True
    restarted = steps_core(storage_dir=storage)
    assert restarted.hook.pv_steps_running_revision(core=restarted) == "0"
    assert boot_record(storage) == {"pv_rev": "0", "pv_try": None, "try_once": False}


def test_a_try_that_reached_updated_survives_a_restart(steps_core, storage):
    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/try")
    pv_steps.set_running(core, rev="locals/try")
    pv_steps.set_progress(core, rev="locals/try", status="UPDATED",
                                  message="Update finished, revision not set as rollback point")
    restarted = steps_core(storage_dir=storage)
    assert restarted.hook.pv_steps_running_revision(core=restarted) == "locals/try"
    assert boot_record(storage)["pv_try"] == "locals/try"


def test_an_interrupted_try_rolls_back_at_the_next_start(steps_core, storage, make_client):
    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/try")
    pv_steps.set_running(core, rev="locals/try")
    pv_steps.set_progress(core, rev="locals/try", status="INPROGRESS",
                                  message="Transitioning to new revision without rebooting")
    restarted = steps_core(storage_dir=storage)  # pvcore died mid-transition
    assert restarted.hook.pv_steps_running_revision(core=restarted) == "0"
    assert boot_record(storage) == {"pv_rev": "0", "pv_try": None, "try_once": False}
    progress = make_client(restarted).simulate_get("/steps/locals/try/progress").json
    assert (progress["status"], progress["status-msg"]) == ("ERROR", "Unexpected rollback")


def test_an_interrupted_try_rolls_back_on_a_full_disk_too(steps_core, storage, make_client, monkeypatch):
    """The boot decision is not stopped by a disk that refuses the boot record and the
    progress (issue 27): the committed revision runs, the ERROR is shown from memory."""
    import errno

    from pv_steps import boot, trails

    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/try")
    pv_steps.set_running(core, rev="locals/try")
    pv_steps.set_progress(core, rev="locals/try", status="TESTING", message="Awaiting to see if update is stable")

    def full(path, data, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(boot, "atomic_write", full)
    monkeypatch.setattr(trails, "atomic_write", full)
    restarted = steps_core(storage_dir=storage)  # pvcore died while TESTING, and the disk filled up
    assert restarted.hook.pv_steps_running_revision(core=restarted) == "0"
    assert boot_record(storage)["pv_try"] == "locals/try"  # unchanged: the next start decides again
    progress = make_client(restarted).simulate_get("/steps/locals/try/progress").json
    assert (progress["status"], progress["status-msg"]) == ("ERROR", "Unexpected rollback")


def test_commit(steps_core, storage):
    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/c")
    pv_steps.set_running(core, rev="locals/c")
    assert pv_steps.commit(core, rev="locals/c") is True
    assert boot_record(storage) == {"pv_rev": "locals/c", "pv_try": None, "try_once": False}
    assert os.path.exists(trail(storage, "locals", "c", ".pv", "done"))
    assert pv_steps.commit(core, rev="nope") is None


def test_set_progress(steps_core, storage, make_client):
    core = steps_core(storage_dir=storage)
    client = make_client(core)
    assert pv_steps.set_progress(core, rev="0", status="TESTING",
                                         message="Awaiting to see if update is stable") is True
    assert client.simulate_get("/steps/0/progress").content == (
        b'{"status":"TESTING","status-msg":"Awaiting to see if update is stable","progress":75,"retries":0}')
    logs = '{"msg":"platform \'c\' status goal timed out"}\n'
    pv_steps.set_progress(core, rev="current", status="ERROR", message="Status goal not reached",
                                  logs=logs)
    assert client.simulate_get("/steps/0/progress").json == {
        "status": "ERROR", "status-msg": "Status goal not reached", "progress": 100, "retries": 0, "logs": logs}
    with open(trail(storage, "0", ".pv", "logs")) as fh:
        assert fh.read() == logs
    assert pv_steps.set_progress(core, rev="5", status="NEW", message="x") is None
    assert not os.path.exists(trail(storage, "5"))


@pytest.mark.parametrize("status,percent", [
    ("NEW", 0), ("QUEUED", 5), ("DOWNLOADING", 25), ("INPROGRESS", 50), ("TESTING", 75), ("UPDATED", 100),
    ("DONE", 100), ("WONTGO", 100), ("ERROR", 100), ("WHATEVER", 0),
])
def test_progress_percentages(steps_core, storage, status, percent):
    core = steps_core(storage_dir=storage)
    pv_steps.set_progress(core, rev="0", status=status, message="m")
    with open(trail(storage, "0", ".pv", "progress")) as fh:
        assert json.load(fh)["progress"] == percent


def test_make_factory(steps_core, storage, make_client):
    core = steps_core(storage_dir=storage)
    state = minimal_state(**{"x/f": SHA_B})
    make_rev(storage, "locals/f", state)
    open(trail(storage, "0", "stale-file"), "w").close()
    before = core.hook.pv_steps_revision(core=core, rev="0")
    assert pv_steps.make_factory(core, rev="locals/f") is True
    assert core.hook.pv_steps_revision(core=core, rev="0") == build("0", state) != before
    assert not os.path.exists(trail(storage, "0", "stale-file"))
    assert core.hook.pv_steps_running_revision(core=core) == "0"
    assert pv_steps.make_factory(core, rev="locals/none") is None
    assert pv_steps.make_factory(core, rev="0") is True  # itself: still intact
    assert core.hook.pv_steps_revision(core=core, rev="0") == build("0", state)


def test_revisions_in_use_are_running_tried_committed_and_factory(steps_core, storage):
    core = steps_core(storage_dir=storage)
    make_rev(storage, "locals/a")
    make_rev(storage, "locals/b")
    assert sorted(core.stash[pv_steps.STEPS].in_use()) == ["0"]
    pv_steps.set_running(core, rev="locals/a")  # being tried
    assert sorted(core.stash[pv_steps.STEPS].in_use()) == ["0", "locals/a"]


def test_revisions_in_use_include_every_local_when_told_to(steps_core, storage):
    core = steps_core(storage_dir=storage, steps_gc_keep_locals=True)
    make_rev(storage, "locals/a")
    make_rev(storage, "locals/b")
    assert sorted(core.stash[pv_steps.STEPS].in_use()) == ["0", "locals/a", "locals/b"]


def test_gc_prunes_revisions_nobody_uses(steps_core, storage, make_client):
    collected = []

    class Engine:  # stands in for the owner of a revision's logs and disks
        @hookimpl
        def pvcore_declare_ownership(self):
            return Owns(listens=("revision.collected",))

        @hookimpl
        def pvcore_event(self, core, event):
            collected.append(event.subject)

    core = steps_core(Engine(), storage_dir=storage, steps_gc_grace=0)
    core.publish("command.accepted", "LOCAL_RUN", {"payload": "7"})  # waiting in the command slot
    for rev in ("3", "5", "7", "locals/old"):
        make_rev(storage, rev)
    os.makedirs(os.path.join(storage, "logs", "5", "pantavisor"))
    os.makedirs(os.path.join(storage, "disks", "rev", "5", "c"))
    make_rev(storage, "4")
    pv_steps.set_running(core, rev="4")  # being tried
    assert pv_steps.collect_garbage(core) == 0  # no object store loaded: nothing reclaimed
    assert [e["name"] for e in make_client(core).simulate_get("/steps").json] == ["0", "4", "7"]
    assert sorted(collected) == ["3", "5", "locals/old"]
    # A revision's logs and disks are the engine's: pv_steps only announces (docs/architecture.md §2).
    assert os.path.exists(os.path.join(storage, "logs", "5", "pantavisor"))
    assert os.path.exists(os.path.join(storage, "disks", "rev", "5", "c"))


def test_gc_spares_revisions_written_in_the_grace_window(steps_core, storage, make_client):
    now = [1_000_000.0]
    core = steps_core(storage_dir=storage, steps_gc_grace=300)
    core.stash[pv_steps.STEPS]._clock = lambda: now[0]
    for rev, age in (("5", 301), ("6", 299), ("locals/old", 1000), ("locals/new", 10)):
        path = make_rev(storage, rev)
        for sub in ("", ".pvr/json", ".pv"):
            os.utime(os.path.join(path, sub), (now[0] - age, now[0] - age))
    pv_steps.collect_garbage(core)
    assert [e["name"] for e in make_client(core).simulate_get("/steps").json] == ["0", "6", "locals/new"]
    # a progress written since counts as a write
    progress = os.path.join(trail(storage, "6"), ".pv", "progress")
    with open(progress, "w") as fh:
        fh.write("{}")
    os.utime(progress, (now[0], now[0]))
    now[0] += 295
    pv_steps.collect_garbage(core)
    assert [e["name"] for e in make_client(core).simulate_get("/steps").json] == ["0", "6"]


OTHER_FAMILIES = ["pv_buildinfo", "pv_containers", "pv_groups", "pv_signal", "pv_daemons", "pv_drivers",
                  "pv_metadata", "pv_config", "pv_xconnect", "pv_commands"]


def test_gc_with_objects_removes_only_objects_of_removed_revisions(make_core, storage, make_client):
    # The two storage plugins as installed (entry points), nothing else.
    core = make_core(load_entrypoints=True, disabled=OTHER_FAMILIES,
                     overrides={"storage_dir": storage, "storage_gc_grace": 0, "storage_reserved_percent": 0,
                                "steps_gc_grace": 0})
    objects = os.path.join(storage, "objects")
    shas = {}
    for label in ("factory", "old-remote", "local"):
        data = label.encode()
        sha = hashlib.sha256(data).hexdigest()
        shas[label] = sha
        assert make_client(core).simulate_put("/objects/" + sha, body=data).status_code == 200
    make_rev(storage, "0", minimal_state(**{"k": shas["factory"]}))
    make_rev(storage, "5", minimal_state(**{"k": shas["old-remote"]}))
    make_rev(storage, "locals/l", minimal_state(**{"k": shas["local"]}))
    result = make_client(core).simulate_post("/storage/gc")
    assert result.content == b'{"reclaimed": %d}' % (len("old-remote") + len("local"))
    assert sorted(os.listdir(objects)) == [shas["factory"]]
    assert sorted(core.stash[pv_steps.STEPS].objects_in_use()) == [shas["factory"]]


def test_startup_sweeps_staging_of_dead_workers(steps_core, storage):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(trail(storage, f".{dead.pid}-aa.tmp", ".pvr"))
    os.makedirs(trail(storage, f".{os.getppid()}-bb.tmp"))
    steps_core(storage_dir=storage)
    assert sorted(n for n in os.listdir(trail(storage)) if n.endswith(".tmp")) == [f".{os.getppid()}-bb.tmp"]


def test_plugin_registers_every_hook_it_promises():
    names = {name for name in dir(pv_steps) if name.startswith(("pvcore_", "pv_steps_", "pv_commands_"))}
    assert {"pv_steps_running_revision", "pv_steps_revision", "pv_commands_run",
            "pv_commands_update_ongoing", "pvcore_event"} <= names
