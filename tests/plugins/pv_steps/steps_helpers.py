"""Helpers shared by the steps tests: lay revisions down on disk directly."""
import json
import os
from typing import Optional

SPEC = "pantavisor-service-system@1"
SHA_A = "a" * 64
SHA_B = "b" * 64


def minimal_state(**extra) -> dict:
    state = {"#spec": SPEC}
    state.update(extra)
    return state


def make_rev(storage_dir: str, rev: str, state: Optional[dict] = None, progress: Optional[str] = None,
             commitmsg: Optional[bytes] = None) -> str:
    path = os.path.join(storage_dir, "trails", rev)
    os.makedirs(os.path.join(path, ".pvr"), exist_ok=True)
    os.makedirs(os.path.join(path, ".pv"), exist_ok=True)
    with open(os.path.join(path, ".pvr", "json"), "w") as fh:
        json.dump(minimal_state() if state is None else state, fh)
    if progress is not None:
        with open(os.path.join(path, ".pv", "progress"), "w") as fh:
            fh.write(progress)
    if commitmsg is not None:
        with open(os.path.join(path, ".pv", "commitmsg"), "wb") as fh:
            fh.write(commitmsg)
    return path


def point_current(storage_dir: str, rev: str) -> None:
    link = os.path.join(storage_dir, "trails", "current")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(rev, link)


def trail(storage_dir: str, *parts: str) -> str:
    return os.path.join(storage_dir, "trails", *parts)
