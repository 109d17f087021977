"""The engine's records of a revision model (docs/protocol.md §D4.1)."""
import pytest

from engine_fakes import model_of, run_json, state_of
from pv_containers.model import Status, load, render_backoff


def test_status_order():
    order = ["NONE", "INSTALLED", "MOUNTED", "BLOCKED", "STARTING", "STARTED", "READY", "RECOVERING",
             "STOPPING", "STOPPED"]
    assert sorted(Status, key=int) == [Status[name] for name in order]


def test_records_read_the_model_and_share_its_groups():
    model = model_of("7", state_of(run_json("a"), run_json("b", group="app", status_goal="READY")))
    loaded = load(model)
    assert loaded.rev == "7" and loaded.model is model
    assert [g.name for g in loaded.groups] == [g.name for g in model.groups]
    b = loaded.containers["b"]
    assert b.spec is model.containers["b"] and b.rev == "7"
    assert (b.name, b.group.name, b.goal, b.restart_policy, b.roles) == ("b", "app", Status.READY, "container", ("mgmt",))
    assert b.group is next(g for g in loaded.groups if g.name == "app")
    assert b.status == Status.NONE and b.recovery is None
    # the engine's records are fresh per load: runtime state never lands in the shared model
    assert load(model).containers["b"] is not b


@pytest.mark.parametrize("seconds,rendered", [
    ("reboot", "reboot"), ("never", "never"), (30.0, "30s"), (600.0, "10min"), (3600.0, "1h"), (7200, "2h"),
    (120.0, "2min"), (3601.0, "3601s"),
])
def test_backoff_policy_render(seconds, rendered):
    assert render_backoff(seconds) == rendered
