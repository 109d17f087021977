"""core.start()/core.stop(): services in priority order, stopped in reverse."""
import pytest

from pvcore import hookimpl
from pvcore.errors import StartupError
from pvcore.services import LoopService, Service
from pvcore.testing import wait_until


class Recorder(Service):
    def __init__(self, name, priority, journal, fail=False):
        self.name, self.priority, self.journal, self.fail = name, priority, journal, fail

    def start(self):
        if self.fail:
            raise RuntimeError("cannot start " + self.name)
        self.journal.append("start " + self.name)

    def stop(self):
        self.journal.append("stop " + self.name)


def plugin_with(*services):
    class P:
        @hookimpl
        def pvcore_services(self, core):
            return list(services)

        @hookimpl
        def pvcore_shutdown(self, core):
            services[0].journal.append("shutdown")

    return P()


def test_services_start_by_priority_and_stop_in_reverse(make_core):
    journal = []
    core = make_core(plugins=[plugin_with(Recorder("late", 200, journal), Recorder("early", 10, journal))])
    core.start()
    core.stop()
    assert journal == ["start early", "start late", "stop late", "stop early", "shutdown"]


def test_stop_is_idempotent_and_safe_without_start(make_core):
    journal = []
    core = make_core(plugins=[plugin_with(Recorder("a", 1, journal))])
    core.stop()
    assert journal == []
    core.start()
    core.stop()
    core.stop()
    assert journal == ["start a", "stop a", "shutdown"]


def test_a_failing_start_stops_what_started_and_fails_in_one_line(make_core):
    journal = []
    core = make_core(plugins=[plugin_with(Recorder("a", 1, journal), Recorder("b", 2, journal, fail=True))])
    with pytest.raises(StartupError) as info:
        core.start()
    assert str(info.value) == "plugin P (not installed): service b failed to start: RuntimeError: cannot start b"
    # b is stopped too: a start that failed half-way may have begun something.
    assert journal == ["start a", "stop b", "stop a"]
    assert not core.started


class Spawner(Service):
    """Spawns a long-lived child, then is interrupted (SIGINT raises SystemExit in the worker)."""

    name = "spawner"

    def __init__(self, core, interrupt):
        self.core, self.interrupt, self.proc, self.journal = core, interrupt, None, []

    def start(self):
        self.proc = self.core.supervisor.spawn("spawner", ["sleep", "600"])
        if self.interrupt:
            raise SystemExit(0)

    def stop(self):
        pass  # forgets its child, as a stop racing its own start would


def test_a_start_interrupted_after_a_spawn_leaves_no_process(make_core):
    """Issue 27: a daemon outlived pvcore after a SIGINT during start-up."""
    core = make_core()
    spawner = Spawner(core, interrupt=True)
    core.pm.register(plugin_with(spawner))
    with pytest.raises(SystemExit):
        core.start()
    assert spawner.proc.wait(5) == -9


def test_nothing_spawned_late_outlives_stop(make_core):
    core = make_core()
    spawner = Spawner(core, interrupt=False)
    core.pm.register(plugin_with(spawner))
    core.start()
    core.stop()  # the child's owner never stopped it: the supervisor does
    assert spawner.proc.wait(5) == -9
    with pytest.raises(OSError):  # and a spawn racing the shutdown is refused
        core.supervisor.spawn("late", ["sleep", "600"])


def test_loop_service_ticks_wakes_and_stops_promptly():
    ticks = []
    loop = LoopService("ticker", lambda: ticks.append(1), interval=60)
    loop.start()
    wait_until(lambda: len(ticks) == 1)
    loop.wake()
    wait_until(lambda: len(ticks) == 2)
    import time

    t0 = time.monotonic()
    loop.stop()
    assert time.monotonic() - t0 < 5
