"""pv_steps: revisions ("steps") in ``<storage>/trails``, progress, commit messages.

Routes: ``GET /steps``, ``GET /steps/{rev}``, ``GET /steps/{rev}/progress``,
``PUT /steps/{rev}/commitmsg`` and the same under ``/steps/locals/{name}``
plus ``PUT /steps/locals/{name}`` (install a local revision).

``POST /storage/gc`` and ``RUN_GC``: pv_steps decides which revisions go,
then has the object store collect everything the kept ones do not reference.
Revision transitions (``LOCAL_RUN`` … ``MAKE_FACTORY`` and their rollback)
are pv_steps' too (:mod:`pv_steps.transition`), reached through
``pv_commands_run``.

The contract other plugins use (the running revision, the one revision
model, :mod:`pv_steps.model`) is in :mod:`pv_steps.hookspecs`. pv_steps
publishes ``revision.running`` whenever the running revision changes.
"""
from __future__ import annotations


import structlog

from pvcore import hookimpl
from pvcore.ownership import MetaFact, Owns
from pvcore.app import StashKey
from pvcore.errors import StartupError
from pvcore.services import LoopService, Service
from pvcore.settings import Setting

from pv_steps.model import load_default_groups
from pv_steps.resources import CommitMessage, GarbageCollect, LocalStep, Progress, StepList, StepState
from pv_steps.secureboot import boot_check, verify_state
from pv_steps.state import Steps
from pv_steps.transition import TRANSITIONS, Updater, goals_timeout
from pv_steps.validate import check_state, parse_state

log = structlog.get_logger(__name__)

STEPS: StashKey[Steps] = StashKey()
UPDATER: StashKey[Updater] = StashKey()


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        paths={"<storage>/trails/": "revisions: `<rev>/.pvr/json` (state JSON), `<rev>/.pvr/commitmsg`, "
                                    "`<rev>/.pv/progress`, `<rev>/.pv/logs`, `<rev>/.pv/done`, the revision's files "
                                    "(hard links into objects/), `current` (symlink), `locals/<name>/`",
               "<storage>/boot/": "`pv.json`: the boot record (revision to boot, try-once, rollback point)"},
        device_meta={"pantavisor.revision": MetaFact("revision.running", help="the running revision")},
        events={"revision.running": "the running revision changed (subject: the revision; data: old)",
                "revision.progress": "a revision's progress was rewritten (subject: the revision; data: the "
                                     "progress document)",
                "revision.collected": "garbage collection removed a revision (subject: the revision): owners "
                                      "of per-revision data delete theirs"},
        listens=("container.status", "command.accepted", "command.finished"),
        caller_events=("revision.running",),
        health={"revision": "revision.running"},
    )


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("steps_max_state_size", int, 16 << 20,
                "Largest state JSON PUT /steps/locals/{name} accepts, in bytes; larger bodies get 507."),
        Setting("update_goals_timeout", float, 120.0,
                "Status-goal timeout, in seconds, of groups whose state sets no timeout, when no "
                "configuration plugin answers PV_UPDATER_GOALS_TIMEOUT (pv_config's, default 120, wins)."),
        Setting("update_commit_delay", float, 25.0,
                "Seconds a transitioned revision stays TESTING before it is final (UPDATED or DONE); "
                "upstream's PV_UPDATER_COMMIT_DELAY, 25; the demo device uses 2.", demo=2.0),
        Setting("default_groups_file", str, "",
                "A groups.json holding the groups of a state that declares none (upstream's "
                "/etc/pantavisor/defaults/groups.json); empty: upstream's shipped defaults "
                "(data, root, platform, app)."),
        Setting("steps_gc_grace", float, 600.0,
                "Seconds garbage collection spares a revision after it was last written (state JSON "
                "installed or progress recorded), so a revision just put is not reclaimed before it runs."),
        Setting("steps_gc_keep_locals", bool, False,
                "Spare every locals/* revision from garbage collection; upstream reclaims them like any "
                "revision that is not running, tried, committed or factory."),
    ]


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_steps import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


# NOTE: trylast, so the engine exists when the boot revision is handed to it.
@hookimpl(trylast=True)
def pvcore_startup(core):
    settings = core.settings
    path = settings.get("default_groups_file")
    default_groups = load_default_groups(path) if path else None
    if path and default_groups is None:
        raise StartupError(f"default_groups_file {path!r} holds no usable groups")
    steps = Steps(settings.storage_dir, gc_grace=settings.get("steps_gc_grace"),
                  gc_keep_locals=settings.get("steps_gc_keep_locals"), default_groups=default_groups)
    steps.start()
    core.stash[STEPS] = steps
    _load_running(core, steps)
    core.stash[UPDATER] = Updater(core, steps, lambda rev, try_once: set_running(core, rev, try_once))


def _load_running(core, steps) -> None:
    # The running revision is checked before anything of it runs (docs/protocol.md §D12.1).
    rev = boot_check(core, steps)
    revision = steps.revisions.get(rev) if rev is not None else None
    if revision is not None:
        core.call("pv_containers_load", revision=revision, goals_timeout=goals_timeout(core))


@hookimpl
def pv_steps_install_factory(core, state_json):
    if core.started:
        raise RuntimeError("pv_steps_install_factory: the core has started; call it before core.start()")
    state = parse_state(state_json)
    reason = "not a JSON object" if state is None else check_state(state, core.settings.init_mode)
    if reason is not None:
        raise ValueError(f"not a valid state JSON: {reason}")
    steps = core.stash[STEPS]
    if not steps.install_factory(state_json):
        return False
    _load_running(core, steps)
    return True


class BootAnnouncement(Service):
    """Publishes the boot decision (``revision.running``, ``old`` null) when the worker starts,
    and from then on each progress rewrite (``revision.progress``).

    Not from :func:`pvcore_startup`: listeners may not have built their state yet.
    """

    name = "pv_steps.boot"
    priority = 10

    def __init__(self, core):
        self._core = core

    def start(self) -> None:
        trails = self._core.stash[STEPS].trails
        running = trails.running()
        if running is not None:
            self._core.publish("revision.running", running, {"old": None})
        # From now on every progress rewrite is an event (GET /steps/{rev}/progress shows it first).
        trails.on_progress = lambda rev, doc: self._core.publish("revision.progress", rev, doc)

    def stop(self) -> None:
        self._core.stash[STEPS].trails.on_progress = None


#: Seconds between two tries at writing a progress the disk refused.
PROGRESS_RETRY = 2.0


class ProgressRetry(LoopService):
    """Writes the progress documents a full disk refused once it has space
    again (:meth:`pv_steps.trails.Trails.flush_progress`); a last try at stop."""

    def __init__(self, core):
        super().__init__("pv_steps.progress-retry", self._flush, interval=PROGRESS_RETRY, priority=12)
        self._core = core

    def _flush(self) -> None:
        self._core.stash[STEPS].trails.flush_progress()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._flush()


@hookimpl
def pvcore_services(core):
    return [BootAnnouncement(core), ProgressRetry(core), core.stash[UPDATER]]


@hookimpl
def pvcore_routes(core):
    steps = core.stash[STEPS]
    settings = core.settings
    state = StepState(steps)
    progress = Progress(steps)
    commitmsg = CommitMessage(steps)
    return [
        ("/steps", StepList(steps)),
        ("/steps/{rev}", state),
        ("/steps/{rev}/progress", progress),
        ("/steps/{rev}/commitmsg", commitmsg),
        ("/steps/locals/{name}", LocalStep(steps, settings.free_space, settings.get("steps_max_state_size"),
                                           settings.init_mode, lambda path: verify_state(core, path))),
        ("/steps/locals/{name}/progress", progress),
        ("/steps/locals/{name}/commitmsg", commitmsg),
        ("/storage/gc", GarbageCollect(lambda: collect_garbage(core))),
    ]


@hookimpl
def pv_steps_running_revision(core):
    return core.stash[STEPS].trails.running()


@hookimpl
def pv_steps_revision(core, rev):
    return core.stash[STEPS].revisions.get(rev)


def collect_garbage(core) -> int:
    """Remove the revisions nobody needs, then their unreferenced objects.

    Kept: the boot record's revisions, the update in flight and a transition
    waiting in the command slot. :return: the bytes the object store reclaimed.
    """
    steps = core.stash[STEPS]
    for rev in steps.collect(core.stash[UPDATER].in_use()):
        # Its logs and disks are the container engine's to delete (docs/architecture.md §2).
        core.publish("revision.collected", rev, {})
    return core.call("pv_objects_collect", default=0, keep=steps.objects_in_use())


@hookimpl(optionalhook=True)
def pv_commands_run(core, op, payload):
    if op in TRANSITIONS:
        return core.stash[UPDATER].run(op, payload)
    if op == "RUN_GC":
        reclaimed = collect_garbage(core)
        log.info("garbage_collected", reclaimed=reclaimed, trigger="command")
        return True
    return None


@hookimpl(optionalhook=True)
def pv_commands_update_ongoing(core):
    return core.stash[UPDATER].ongoing()


@hookimpl
def pvcore_event(core, event):
    updater = core.stash.get(UPDATER)
    if updater is None:
        return
    if event.type == "container.status":
        updater.container_status(event.subject, event.data.get("old"), event.data.get("new"), event.data)
    elif event.type == "command.accepted" and event.subject in TRANSITIONS:
        with updater.cond:
            updater.pending = event.data.get("payload") or None
    elif event.type == "command.finished" and event.subject in TRANSITIONS:
        with updater.cond:
            updater.pending = None


def set_progress(core, rev, status, message, logs=None):
    """Write ``rev``'s progress; ``None`` when the revision does not exist."""
    return True if core.stash[STEPS].trails.write_progress(rev, status, message, logs) else None


def set_running(core, rev, try_once=False):
    """Point ``current`` at ``rev`` (recorded as tried), then publish ``revision.running``."""
    steps = core.stash[STEPS]
    old = steps.trails.running()
    done = steps.set_running(rev, try_once)
    new = steps.trails.running()
    if done and new != old:
        core.publish("revision.running", new, {"old": old})
    return done


def commit(core, rev):
    """``rev`` becomes the rollback point."""
    return core.stash[STEPS].commit(rev)


def make_factory(core, rev):
    """Replace revision ``0`` with a copy of ``rev``'s state JSON."""
    return core.stash[STEPS].make_factory(rev)
