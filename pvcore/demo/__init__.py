"""The embedded demo device: a factory revision ``0`` laid down under ./var/.

``make run`` starts pvcore with ``PVCORE_DEMO=1``; when the storage dir holds
no revision yet, :func:`seed_if_empty` writes a valid state JSON (docs/protocol.md
§D2) with a platform container, the two xconnect examples in group
``app`` and a BSP driver manifest; its objects are real files in ``objects/``
hard-linked into the trail, as on a device that booted its factory revision.

Containers run under the process runtime: ``run.json`` carries an ``exec``
argv (``{python}`` stands for the interpreter running pvcore) for the small
program in :mod:`pvcore.demo.container`.

:func:`build_manifest` is the demo's ``GET /buildinfo`` text (pvcore's
version, Python, the plugins loaded), used unless ``PVCORE_BUILDINFO`` (or the
settings file) gives the device a manifest of its own.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
from typing import Dict, Iterable, Tuple

from pvcore.fsutil import atomic_write

SPEC = "pantavisor-service-system@1"
SERVICE = "pv-example-unix"
SERVER = "pv-example-unix-server"
CLIENT = "pv-example-unix-client"


def _blob(label: str) -> bytes:
    # Deterministic stand-ins for rootfs images and kernels: real objects with
    # real hashes, small enough to seed instantly.
    return (f"pvcore demo artifact: {label}\n" * 64).encode()


def _container(name: str, group: str, argv, **fields) -> dict:
    run = {
        "#spec": "service-manifest-run@1",
        "name": name,
        "type": "lxc",
        "config": "lxc.container.conf",
        "root-volume": "root.squashfs",
        "volumes": [],
        "group": group,
        "storage": {"lxc-overlay": {"persistence": "boot"}},
        "exec": ["{python}", "-m", "pvcore.demo.container", *argv],
    }
    run.update(fields)
    return run


def demo_state() -> Tuple[dict, Dict[str, bytes]]:
    """The demo revision's state JSON and the objects it references (sha → bytes)."""
    objects: Dict[str, bytes] = {}
    state: dict = {"#spec": SPEC}

    def artifact(key: str) -> None:
        data = _blob(key)
        sha = hashlib.sha256(data).hexdigest()
        objects[sha] = data
        state[key] = sha

    for key in ("bsp/kernel.img", "bsp/pantavisor", "bsp/modules.squashfs"):
        artifact(key)
    state["bsp/run.json"] = {"addons": [], "initrd": "pantavisor", "initrd_config": "",
                             "linux": "kernel.img", "modules": "modules.squashfs"}
    state["bsp/drivers.json"] = {
        "#spec": "driver-aliases@1",
        "all": {
            "wifi": ["cfg80211", "brcmfmac ${user-meta:wifi.opts}"],
            "usb-serial": ["usbserial", "ftdi_sio"],
        },
    }
    containers = {
        "pvr-sdk": _container("pvr-sdk", "platform", []),
        SERVER: _container(
            SERVER, "app", ["--ready"], status_goal="READY", restart_policy="container",
        ),
        CLIENT: _container(
            CLIENT, "app", ["--ready"], status_goal="READY", restart_policy="container", roles=[],
            drivers={"required": [], "optional": [], "manual": ["wifi"]},
            services={"required": [{"name": SERVICE, "type": "unix",
                                    "target": "/run/pv/services/pv-example-unix.sock"}],
                      "optional": []},
        ),
    }
    for name, run in containers.items():
        artifact(f"{name}/lxc.container.conf")
        artifact(f"{name}/root.squashfs")
        state[f"{name}/run.json"] = run
    state[f"{SERVER}/services.json"] = {
        "#spec": "service-manifest-xconnect@1",
        "services": [{"name": SERVICE, "type": "unix", "socket": "/run/example/unix.sock"}],
    }
    return dict(sorted(state.items())), objects


def seed_if_empty(storage_dir: str) -> bool:
    """Write revision ``0`` unless ``storage_dir`` already holds revisions.

    :return: ``True`` if the device was seeded.
    """
    trails = os.path.join(storage_dir, "trails")
    if os.path.isdir(trails) and any(name not in ("locals", "current") for name in os.listdir(trails)):
        return False
    state, objects = demo_state()
    objdir = os.path.join(storage_dir, "objects")
    rev = os.path.join(trails, "0")
    for path in (objdir, os.path.join(rev, ".pvr"), os.path.join(rev, ".pv"), os.path.join(trails, "locals")):
        os.makedirs(path, exist_ok=True)
    for sha, data in objects.items():
        path = os.path.join(objdir, sha)
        if not os.path.exists(path):
            atomic_write(path, data)
    for key, value in state.items():
        if key == "#spec":
            continue
        target = os.path.join(rev, key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(value, str):
            if not os.path.exists(target):
                os.link(os.path.join(objdir, value), target)
        else:
            atomic_write(target, json.dumps(value, separators=(",", ":")))
    atomic_write(os.path.join(rev, ".pvr", "json"), json.dumps(state, separators=(",", ":")))
    atomic_write(os.path.join(rev, ".pvr", "config"), json.dumps({"ObjectsDir": objdir}))
    atomic_write(os.path.join(rev, ".pv", "progress"),
                 '{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}')
    atomic_write(os.path.join(rev, ".pv", "done"), b"")
    current = os.path.join(trails, "current")
    if not os.path.lexists(current):
        os.symlink("0", current)
    return True


def build_manifest(plugins: Iterable[str]) -> str:
    """The demo device's build manifest (``GET /buildinfo``): pvcore's
    version, the Python running it, and ``plugins`` (one label each, e.g.
    ``pv_steps (pvcore 0.1.0)``), as plain text.

    A real device is given its manifest through the ``buildinfo`` setting;
    the demo only fills in that setting when nothing else did.
    """
    lines = [
        f"pvcore {_pvcore_version()} (demo device)",
        f"python {platform.python_implementation()} {platform.python_version()}",
        f"platform {platform.system()} {platform.machine()}",
        "plugins:",
    ]
    lines += [f"  {label}" for label in sorted(plugins)]
    return "\n".join(lines) + "\n"


def _pvcore_version() -> str:
    try:
        return importlib.metadata.version("pvcore")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
