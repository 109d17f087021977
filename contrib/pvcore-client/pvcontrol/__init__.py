"""pvcontrol: command-line client for Pantavisor's pv-ctrl socket.

Entry point :func:`main`; also runnable as ``python -m pvcontrol``.
"""

from pvcontrol.cli import main

__all__ = ["main"]
