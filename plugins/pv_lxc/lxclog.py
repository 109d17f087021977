"""What the container's ``lxc.log`` says: its init's own exit status, the tail for an error."""
from __future__ import annotations

import os
import re


_ENDED = re.compile(rb"Child <\d+> ended on (?:error \((\d+)\)|signal[^(]*\((\d+)\))")


def container_exit_status(lxc_log: str, lxc_start_status: int) -> int:
    """The container init's exit status: ``lxc-start -F`` exits with the low
    byte of the init's raw wait status, so an init that exited 3 reads 0.
    LXC logs the real one at INFO; a signal counts ``128 + n``, as LXC's own
    convention. Without that line (lxc-start failed itself, or exit 0) the
    tool's status stands."""
    matches = _ENDED.findall(tail(lxc_log, 8192).encode())
    if not matches:
        return lxc_start_status
    exited, signalled = matches[-1]
    return int(exited) if exited else 128 + int(signalled)


def tail(path: str, size: int = 600) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""
