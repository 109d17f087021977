"""pvcontrol: command-line client for Pantavisor's pv-ctrl socket.

Entry point :func:`main`; also runnable as ``python -m pvcore.pvcontrol``.
"""

from pvcore.pvcontrol.cli import main

__all__ = ["main"]
