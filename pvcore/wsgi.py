"""The module gunicorn loads: ``pvcore.wsgi:app``.

Importing it builds the core from the environment (``PVCORE_*``) and the
installed plugins; nothing starts until gunicorn's ``post_worker_init`` calls
``core.start()``. A plugin mistake stops the boot with one line on stderr
(:class:`BootFailed`; the traceback is in the debug log).
"""
from gunicorn.errors import AppImportError

from pvcore.errors import StartupError
from pvcore.log import configure_structlog
from pvcore.loader import load_core


class BootFailed(AppImportError):
    """A :class:`pvcore.errors.StartupError` as gunicorn reports an app that
    cannot load: its message alone on stderr, and the arbiter stops instead of
    forking worker after worker."""

    def __init__(self, error: StartupError):
        super().__init__(f"pvcore cannot boot: {error}")


configure_structlog()
try:
    core = load_core()
except StartupError as exc:
    raise BootFailed(exc) from None
app = core.app
