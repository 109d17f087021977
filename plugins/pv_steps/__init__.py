"""pv_steps: revisions ("steps") in ``<storage>/trails``, progress, commit messages.

Routes: ``GET /steps``, ``GET /steps/{rev}``, ``GET /steps/{rev}/progress``,
``PUT /steps/{rev}/commitmsg`` and the same under ``/steps/locals/{name}``
plus ``PUT /steps/locals/{name}`` (install a local revision).

``POST /storage/gc`` and ``RUN_GC``: pv_steps decides which revisions go,
then has the object store collect everything the kept ones do not reference.

The contract other plugins use (the running revision, revision states,
progress, the boot record) is in :mod:`pv_steps.hookspecs`. pv_steps
publishes ``revision.running`` whenever the running revision changes.
"""
from __future__ import annotations


import structlog

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.services import Service
from pvcore.settings import Setting

from pv_steps.resources import CommitMessage, GarbageCollect, LocalStep, Progress, StepList, StepState
from pv_steps.state import Steps

log = structlog.get_logger(__name__)

STEPS: StashKey[Steps] = StashKey()


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("steps_max_state_size", int, 16 << 20,
                "Largest state JSON PUT /steps/locals/{name} accepts, in bytes; larger bodies get 507."),
    ]


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_steps import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pvcore_startup(core):
    steps = Steps(core.settings.storage_dir)
    steps.start()
    core.stash[STEPS] = steps


class BootAnnouncement(Service):
    """Publishes the boot decision (``revision.running``, ``old`` null) when the worker starts.

    Not from :func:`pvcore_startup`: listeners may not have built their state yet.
    """

    name = "pv_steps.boot"
    priority = 10

    def __init__(self, core):
        self._core = core

    def start(self) -> None:
        running = self._core.stash[STEPS].trails.running()
        if running is not None:
            self._core.publish("revision.running", running, {"old": None})

    def stop(self) -> None:
        pass


@hookimpl
def pvcore_services(core):
    return [BootAnnouncement(core)]


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
                                           settings.init_mode)),
        ("/steps/locals/{name}/progress", progress),
        ("/steps/locals/{name}/commitmsg", commitmsg),
        ("/storage/gc", GarbageCollect(lambda: collect_garbage(core))),
    ]


@hookimpl
def pv_steps_running_revision(core):
    return core.stash[STEPS].trails.running()


@hookimpl
def pv_steps_revision_state(core, rev):
    return core.stash[STEPS].trails.state(rev)


@hookimpl
def pv_steps_revision_objects(core, rev):
    return core.stash[STEPS].trails.objects(rev)


@hookimpl
def pv_steps_revisions_in_use(core):
    return core.stash[STEPS].in_use()


def collect_garbage(core) -> int:
    """Remove the revisions nobody needs, then their unreferenced objects.

    :return: the bytes the object store reclaimed.
    """
    steps = core.stash[STEPS]
    keep = set()
    for answer in core.hook.pv_steps_revisions_in_use(core=core):
        keep.update(answer or ())
    steps.collect(keep)
    return core.call("pv_objects_collect", default=0, keep=steps.objects_in_use())


@hookimpl(optionalhook=True)
def pv_commands_run(core, op, payload):
    if op != "RUN_GC":
        return None
    reclaimed = collect_garbage(core)
    log.info("garbage_collected", reclaimed=reclaimed, trigger="command")
    return True


@hookimpl
def pv_steps_set_progress(core, rev, status, message, logs=None):
    return True if core.stash[STEPS].trails.write_progress(rev, status, message, logs) else None


@hookimpl
def pv_steps_set_running_revision(core, rev, try_once=False):
    steps = core.stash[STEPS]
    old = steps.trails.running()
    done = steps.set_running(rev, try_once)
    new = steps.trails.running()
    if done and new != old:
        core.publish("revision.running", new, {"old": old})
    return done


@hookimpl
def pv_steps_commit_revision(core, rev):
    return core.stash[STEPS].commit(rev)


@hookimpl
def pv_steps_make_factory(core, rev):
    return core.stash[STEPS].make_factory(rev)
