"""The embedded demo device: a factory revision ``0`` laid down under ./var/.

``make run`` starts pvcore with ``PVCORE_DEMO=1``; when the device has no
revision yet, :func:`seed` installs a valid state JSON (docs/protocol.md §D2)
with a platform container, the two xconnect examples in group ``app`` and a
BSP driver manifest, and its objects, through their owners' contracts (the
object store's and the revision store's), as a device that booted its
factory image finds them.

Containers run under the process runtime: ``run.json`` carries an ``exec``
argv (``{python}`` stands for the interpreter running pvcore) for the small
program in :mod:`pvcore_demo.container`.

:func:`build_manifest` is the demo's ``GET /buildinfo`` text (pvcore's
version, Python, the plugins loaded), used unless ``PVCORE_BUILDINFO`` (or the
settings file) gives the device a manifest of its own.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import platform
from typing import Dict, Iterable, Tuple

import structlog

log = structlog.get_logger(__name__)

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
        "exec": ["{python}", "-m", "pvcore_demo.container", *argv],
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


def seed(core) -> bool:
    """Give a device without revisions the demo's factory revision ``0``, through
    its owners' contracts: each object through the object store
    (``pv_objects_store``), the state through the revision store
    (``pv_steps_install_factory``), which boots it as a factory image's
    first start. The demo writes no file of theirs. Call before ``core.start()``.

    :return: ``True`` if the device was seeded; ``False`` if it has a
        revision already, or an owner is not loaded (then nothing is seeded).
    """
    if core.call("pv_steps_running_revision") is not None:
        return False
    if not core.pm.has_plugin("pv_objects") or not core.pm.has_plugin("pv_steps"):
        log.warning("demo_not_seeded", reason="pv_objects and pv_steps own the storage the demo seeds")
        return False
    state, objects = demo_state()
    for sha, data in objects.items():
        core.call("pv_objects_store", sha=sha, stream=io.BytesIO(data), length=len(data))
    return bool(core.call("pv_steps_install_factory", state_json=state_json(state)))


def state_json(state: dict) -> bytes:
    """``state`` as the demo's factory image holds it (compact JSON)."""
    return json.dumps(state, separators=(",", ":")).encode()


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
