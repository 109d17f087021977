"""The module gunicorn loads: ``pvcore.wsgi:app``.

Importing it builds the core from the environment (``PVCORE_*``) and the
installed plugins; nothing starts until gunicorn's ``post_worker_init`` calls
``core.start()``.
"""
from pvcore.log import configure_structlog
from pvcore.loader import load_core

configure_structlog()
core = load_core()
app = core.app
