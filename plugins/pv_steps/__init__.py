"""pv_steps: revisions ("steps") in ``<storage>/trails``, progress, commit messages.

Routes: ``GET /steps``, ``GET /steps/{rev}``, ``GET /steps/{rev}/progress``,
``PUT /steps/{rev}/commitmsg`` and the same under ``/steps/locals/{name}``
plus ``PUT /steps/locals/{name}`` (install a local revision).

Hooks: the running revision and the boot record (``pv_rev``/``pv_try``),
revision states and the objects they reference, progress, commit, factory,
and revision garbage collection (``tryfirst``, before objects are collected).
"""
from __future__ import annotations


from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.settings import Setting

from pv_steps.resources import CommitMessage, LocalStep, Progress, StepList, StepState
from pv_steps.state import Steps

STEPS: StashKey[Steps] = StashKey()


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("steps_max_state_size", int, 16 << 20,
                "Largest state JSON PUT /steps/locals/{name} accepts, in bytes; larger bodies get 507."),
    ]


@hookimpl
def pvcore_startup(core):
    steps = Steps(core.settings.storage_dir)
    steps.start()
    core.stash[STEPS] = steps


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
    ]


@hookimpl
def pvcore_running_revision(core):
    return core.stash[STEPS].trails.running()


@hookimpl
def pvcore_revision_state(core, rev):
    return core.stash[STEPS].trails.state(rev)


@hookimpl
def pvcore_revision_objects(core, rev):
    return core.stash[STEPS].trails.objects(rev)


@hookimpl
def pvcore_revisions_in_use(core):
    return core.stash[STEPS].in_use()


@hookimpl
def pvcore_objects_in_use(core):
    return sorted(core.stash[STEPS].objects_in_use())


@hookimpl(tryfirst=True)
def pvcore_garbage_collect(core):
    keep = set()
    for answer in core.hook.pvcore_revisions_in_use(core=core):
        keep.update(answer or ())
    core.stash[STEPS].collect(keep)
    return 0  # objects of removed revisions are counted by the objects plugin


@hookimpl
def pvcore_set_progress(core, rev, status, message, logs=None):
    return True if core.stash[STEPS].trails.write_progress(rev, status, message, logs) else None


@hookimpl
def pvcore_set_running_revision(core, rev, try_once=False):
    return core.stash[STEPS].set_running(rev, try_once)


@hookimpl
def pvcore_commit_revision(core, rev):
    return core.stash[STEPS].commit(rev)


@hookimpl
def pvcore_make_factory(core, rev):
    return core.stash[STEPS].make_factory(rev)
