"""Helpers for the LXC runtime's black-box tests: can this machine run LXC, a device, leftovers."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from typing import Dict, List, Optional

from pv_lxc import demo
from pvcore.testing import wait_until

TOOLS = ("lxc-start", "lxc-stop", "lxc-info", "lxc-attach", "mksquashfs", "busybox", "nc")


def unavailable() -> Optional[str]:
    """Why this machine cannot run the LXC runtime's tests, or None when it can."""
    if os.geteuid() != 0:
        return "the LXC runtime needs root (loop devices, mounts, lxc-start)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools {missing} (make test installs lxc, squashfs-tools, busybox-static, netcat-openbsd)"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control: loop devices unavailable"
    with open("/proc/filesystems") as fh:
        known = fh.read().split()
    for fs in ("squashfs", "overlay"):
        if fs not in known:
            subprocess.run(["modprobe", fs], capture_output=True, check=False)
            with open("/proc/filesystems") as fh:
                if fs not in fh.read().split():
                    return f"the kernel has no {fs} filesystem"
    return None


def unique(prefix: str) -> str:
    """A container name no other test (or concurrent suite) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def revision(image: str, containers: Dict[str, dict]) -> tuple:
    """State and object files: ``containers`` maps name → {"args": init args, run.json fields...}.

    Optional per container: ``"conf"`` (its lxc.container.conf, ``{name}`` replaced; the demo's by
    default) and ``"configs"`` (its ``_config`` files: path → bytes, or a JSON document inline).
    """
    with open(image, "rb") as fh:
        rootfs_sha = hashlib.sha256(fh.read()).hexdigest()
    state = {"#spec": demo.SPEC}
    files = {rootfs_sha: image}
    workdir = os.path.dirname(image)
    for name, fields in containers.items():
        fields = dict(fields)
        args = fields.pop("args", "ready")
        conf = fields.pop("conf", None) or demo.lxc_conf(args)
        configs = fields.pop("configs", {})
        part, blobs = demo.container_state(name, rootfs_sha, conf, **fields)
        state.update(part)
        for path, value in configs.items():
            if isinstance(value, bytes):
                sha = hashlib.sha256(value).hexdigest()
                blobs[sha] = value
                value = sha
            state[f"_config/{name}/{path}"] = value
        for sha, data in blobs.items():
            path = os.path.join(workdir, sha)
            with open(path, "wb") as fh:
                fh.write(data)
            files[sha] = path
    return state, files


def install(server, rev: str, state: dict, files: dict, timeout: float = 60.0) -> dict:
    """Upload, PUT and LOCAL_RUN ``rev`` through the socket; its progress once final (UPDATED …)."""
    return demo.install(server.socket, rev, state, files, timeout, until=demo.FINAL)


def containers(server) -> Dict[str, dict]:
    status, _, raw = server.request("GET", "/containers")
    assert status == 200, raw
    return {c["name"]: c for c in json.loads(raw)}


def lxc_path(server) -> str:
    return os.path.join(server.run_dir, "lxc")


def init_pid(server, name: str) -> Optional[int]:
    """The host pid of container ``name``'s init, from LXC itself; None when it is not running."""
    out = subprocess.run(["lxc-info", "-n", name, "-P", lxc_path(server), "-pH"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return int(out) if out.isdigit() else None


def attach(server, name: str, script: str) -> str:
    """Run ``script`` with the container's sh inside its namespaces and cgroup (``lxc-attach``)."""
    result = subprocess.run(["lxc-attach", "-n", name, "-P", lxc_path(server), "--", "/bin/sh", "-c", script],
                            capture_output=True, text=True, timeout=30, check=False)
    return result.stdout + result.stderr


def request_from(server, name: str, method: str, path: str, body: str = "") -> str:
    """An HTTP/1.0 request from inside container ``name``; the status line of the reply."""
    request = f"{method} {path} HTTP/1.0\\r\\nHost: localhost\\r\\nContent-Length: {len(body)}\\r\\n\\r\\n{body}"
    return attach(server, name, f"printf '{request}' | nc.openbsd -U /pantavisor/pv-ctrl").strip()


def mounts_under(path: str) -> List[str]:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p == real or p.startswith(real + "/")]


def loops_backed_under(path: str) -> List[str]:
    real = os.path.realpath(path)
    found = []
    for name in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as fh:
                backing = fh.read().strip()
        except OSError:
            continue
        if backing.startswith(real + "/"):
            found.append(f"/dev/{name}: {backing}")
    return found


def payload_cgroups(names) -> List[str]:
    """LXC cgroups (any hierarchy, renamed ``-1`` ones too) still present for container ``names``,
    at LXC's default place or in a tenants' parent (``pvcore-lxc/<instance>/tenants|monitors``, pv_lxc.memory)."""
    found = []
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", hierarchy)
        if not os.path.isdir(top):
            continue
        parents = [top] + [path for path in glob.glob(os.path.join(top, "pvcore-lxc", "*", "*")) if os.path.isdir(path)]
        for parent in parents:
            for entry in os.listdir(parent):
                if any(entry.startswith((f"lxc.payload.{name}", f"lxc.monitor.{name}")) for name in names):
                    found.append(os.path.join(parent, entry))
    return found


def container_cgroup(server, name: str, controller: str) -> str:
    """The cgroupfs directory of running container ``name`` in ``controller``'s v1 hierarchy."""
    with open(f"/proc/{init_pid(server, name)}/cgroup") as fh:
        for line in fh:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return os.path.join("/sys/fs/cgroup", controller, path.lstrip("/"))
    raise LookupError(f"{name} has no {controller} cgroup")


def leftovers(server, names) -> Dict[str, list]:
    """Everything the device might have left on the host; all lists empty when clean."""
    return {
        "mounts": mounts_under(server.base),
        "loops": loops_backed_under(server.base),
        "cgroups": payload_cgroups(names),
        "lxc_dirs": sorted(os.listdir(lxc_path(server))) if os.path.isdir(lxc_path(server)) else [],
    }


def assert_clean(server, names) -> None:
    wait_until(lambda: not any(leftovers(server, names).values()), 10,
               message=f"no leftovers (now {leftovers(server, names)})")


def console(server, rev: str, name: str) -> str:
    path = os.path.join(server.storage_dir, "logs", rev, name, "console.log")
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""
