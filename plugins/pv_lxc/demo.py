"""A real revision for the LXC runtime, built and installed as a client would.

``python -m pv_lxc.demo --socket var/lxc/run/pv-ctrl`` (what ``make run-lxc``
runs beside the server) builds a small root filesystem — busybox, plus
``nc`` (OpenBSD netcat, as ``nc.openbsd``: busybox's shell would run its own ``nc`` applet) with the libraries it links so the container can speak to the Unix
socket — packs it with ``mksquashfs``, uploads the objects with
``PUT /objects/<sha>``, the state with ``PUT /steps/locals/<name>``, runs it
with ``LOCAL_RUN`` and prints the containers once they reached their goals.

The rootfs's ``/sbin/pvdemo-init`` prints who it is, signals READY over
``/pantavisor/pv-ctrl`` when given ``ready``, then idles until halted.
The tests of the LXC runtime use the same builders.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterable, Mapping, Optional, Tuple

SPEC = "pantavisor-service-system@1"
APPLETS = ("sh", "echo", "cat", "sleep", "printf", "grep", "hostname", "ls", "head", "mkdir", "touch",
           "readlink", "ps", "kill", "id", "mount", "wc", "rm")

INIT = r"""#!/bin/sh
# pvcore's LXC demo init: says who it is, signals READY over pv-ctrl when
# asked to ("ready"), then idles until halted (SIGPWR from lxc-stop, or TERM).
# The process runtime can run it too (make bench): it names the socket in
# PVCORE_CTRL_SOCKET.
socket="${PVCORE_CTRL_SOCKET:-/pantavisor/pv-ctrl}"
trap 'echo "pvdemo $(hostname): halting"; exit 0' PWR TERM INT
echo "pvdemo $(hostname): init pid $$, $socket $(ls "$socket" 2>&1)"
signal_ready() {
    body='{"type":"ready","payload":""}'
    printf 'POST /signal HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
        ${#body} "$body" | nc.openbsd -U "$socket" 2>&1 | head -n 1
}
if [ "$1" = ready ]; then
    i=0
    while [ $i -lt 150 ]; do
        status=$(signal_ready)
        case "$status" in
            *" 200 "*) echo "pvdemo $(hostname): ready signal accepted"; break ;;
        esac
        echo "pvdemo $(hostname): ready signal answered: ${status:-nothing}"
        i=$((i + 1))
        sleep 0.2
    done
fi
if [ "$1" = stubborn ]; then
    trap '' PWR TERM INT  # ignores every polite request: only SIGKILL ends it
fi
if [ "$1" = exit ]; then
    sleep "${2:-1}"
    echo "pvdemo $(hostname): exiting with ${3:-1}"
    exit "${3:-1}"
fi
while :; do sleep 1 & wait $!; done
"""


def write_init(path: str) -> str:
    """Write the demo init script to ``path`` (executable); return ``path``."""
    with open(path, "w") as fh:
        fh.write(INIT)
    os.chmod(path, 0o755)
    return path


def _libraries(binary: str) -> Iterable[str]:
    """Shared libraries (and the loader) ``binary`` needs, from ``ldd``; none for a static one."""
    result = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            path = parts[parts.index("=>") + 1]
            if path.startswith("/"):
                yield path
        elif parts and parts[0].startswith("/"):
            yield parts[0]


def _install(binary: str, root: str, dest: str) -> None:
    target = os.path.join(root, dest.lstrip("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.realpath(binary), target)
    for lib in _libraries(binary):
        copy = os.path.join(root, lib.lstrip("/"))
        if not os.path.exists(copy):
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            shutil.copy2(os.path.realpath(lib), copy)


def build_rootfs(workdir: str, extra: Optional[Mapping[str, bytes]] = None) -> str:
    """Build the demo root filesystem as a squashfs file in ``workdir``; return its path.

    ``extra`` adds files (path in the rootfs → content), for images that differ.
    """
    root = os.path.join(workdir, "rootfs")
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "var", "pantavisor"):
        os.makedirs(os.path.join(root, sub))
    busybox = shutil.which("busybox") or "/bin/busybox"
    netcat = shutil.which("nc") or "/bin/nc"
    for tool in (busybox, netcat):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} is missing (make installs busybox-static and netcat-openbsd)")
    _install(busybox, root, "/bin/busybox")
    _install(netcat, root, "/bin/nc.openbsd")
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(root, "bin", applet))
    write_init(os.path.join(root, "sbin", "pvdemo-init"))
    with open(os.path.join(root, "etc", "hostname"), "w") as fh:
        fh.write("pvdemo\n")
    for path, data in (extra or {}).items():
        target = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)
    image = os.path.join(workdir, "root.squashfs")
    if os.path.exists(image):
        os.unlink(image)
    subprocess.run(["mksquashfs", root, image, "-noappend", "-quiet", "-no-progress", "-all-root",
                    "-no-xattrs", "-mkfs-time", "0", "-all-time", "0"], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(root, ignore_errors=True)
    return image


def lxc_conf(args: str = "", extra: str = "") -> bytes:
    """A container config as pvr writes them (its rootfs/volume paths are rewritten by pv_lxc).

    :param extra: more lines, after the others (a test's explicit grants).
    """
    return (
        "lxc.tty.max = 0\n"
        "lxc.pty.max = 16\n"
        "lxc.rootfs.path = overlayfs:/volumes/{name}/root.squashfs:/volumes/{name}/lxc-overlay/upper\n"
        "lxc.mount.auto = proc:mixed sys:ro cgroup:ro\n"
        "lxc.mount.entry = /volumes/{name}/data data none bind,create=dir 0 0\n"
        "lxc.net.0.type = empty\n"
        f"lxc.init.cmd = /sbin/pvdemo-init {args}\n"
        + extra
    ).encode()


def container_state(name: str, rootfs_sha: str, conf: bytes, **run_fields) -> Tuple[dict, Dict[str, bytes]]:
    """State keys and objects of one container using rootfs ``rootfs_sha``."""
    conf = conf.replace(b"{name}", name.encode())
    conf_sha = hashlib.sha256(conf).hexdigest()
    run = {
        "#spec": "service-manifest-run@1",
        "name": name,
        "type": "lxc",
        "config": "lxc.container.conf",
        "root-volume": "root.squashfs",
        "volumes": [],
        "storage": {"lxc-overlay": {"persistence": "boot"}, "data": {"persistence": "permanent"}},
    }
    run.update(run_fields)
    state = {f"{name}/run.json": run, f"{name}/lxc.container.conf": conf_sha, f"{name}/root.squashfs": rootfs_sha}
    return state, {conf_sha: conf}


def demo_revision(image: str) -> Tuple[dict, Dict[str, str]]:
    """The demo state and its objects (sha → file path): a mgmt and an unprivileged container."""
    with open(image, "rb") as fh:
        rootfs_sha = hashlib.sha256(fh.read()).hexdigest()
    state: dict = {"#spec": SPEC}
    blobs: Dict[str, bytes] = {}
    for name, fields in (("lxc-server", {"group": "platform", "roles": ["mgmt"], "status_goal": "READY"}),
                         ("lxc-client", {"group": "app", "roles": [], "status_goal": "READY"})):
        part, objs = container_state(name, rootfs_sha, lxc_conf("ready"), **fields)
        state.update(part)
        blobs.update(objs)
    workdir = os.path.dirname(image)
    files = {rootfs_sha: image}
    for sha, data in blobs.items():
        path = os.path.join(workdir, sha)
        with open(path, "wb") as fh:
            fh.write(data)
        files[sha] = path
    return dict(sorted(state.items())), files


SETTLED = ("TESTING", "UPDATED", "DONE", "ERROR", "WONTGO")
FINAL = ("UPDATED", "DONE", "ERROR", "WONTGO")


def install(socket_path: str, rev: str, state: Mapping, files: Mapping[str, str], timeout: float = 60.0,
            until: Iterable[str] = SETTLED) -> dict:
    """Upload ``files``, PUT ``state`` as ``rev``, LOCAL_RUN it; its progress once in ``until``."""
    until = tuple(until)
    from pvcore_client import PvClient

    with PvClient(socket_path) as client:
        for sha, path in files.items():
            with open(path, "rb") as fh:
                resp = client.put_file(f"/objects/{sha}", fh, os.fstat(fh.fileno()).st_size)
            if resp.status not in (200, 409):  # 409: already stored
                raise SystemExit(f"PUT /objects/{sha}: {resp.status} {resp.text()}")
        resp = client.request("PUT", f"/steps/{rev}", json.dumps(state))
        if not resp.ok:
            raise SystemExit(f"PUT /steps/{rev}: {resp.status} {resp.text()}")
        resp = client.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": rev}))
        if not resp.ok:
            raise SystemExit(f"LOCAL_RUN {rev}: {resp.status} {resp.text()}")
        deadline = time.monotonic() + timeout
        while True:
            progress = client.get_json(f"/steps/{rev}/progress")
            if progress.get("status") in until:
                return progress
            if time.monotonic() > deadline:
                return progress
            time.sleep(0.1)


def _wait_socket(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode)):
        if time.monotonic() > deadline:
            raise SystemExit(f"no pv-ctrl socket at {path}")
        time.sleep(0.1)


def _running_revision(client) -> Optional[str]:
    """The revision the device runs (device-meta ``pantavisor.revision``), if any."""
    resp = client.request("GET", "/device-meta")
    meta = resp.json() if resp.ok else None
    if not isinstance(meta, dict):
        return None
    return meta.get("pantavisor.revision") or None


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pv_lxc.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the pv-ctrl socket of a server running the lxc runtime")
    parser.add_argument("--rev", default="locals/lxc-demo", help="name of the local revision")
    args = parser.parse_args(argv)
    _wait_socket(args.socket, 60)
    from pvcore_client import PvClient

    with tempfile.TemporaryDirectory(prefix="pvlxc") as workdir:
        image = build_rootfs(workdir)
        state, files = demo_revision(image)
        with PvClient(args.socket) as client:
            running = client.request("GET", "/steps/current")
            running_rev = _running_revision(client)
        if running_rev not in (None, args.rev):
            # The user's own revision runs on this storage: never replace it.
            print(f"pv_lxc demo: keeping the running revision {running_rev}; "
                  f"run the demo with: pvcontrol cmd run {args.rev}", flush=True)
            args.rev = running_rev
            with PvClient(args.socket) as client:
                progress = client.get_json(f"/steps/{running_rev}/progress")
        elif running.ok and running.json() == state:  # a second `make run-lxc`: it booted already
            with PvClient(args.socket) as client:
                progress = client.get_json(f"/steps/{args.rev}/progress")
        else:
            progress = install(args.socket, args.rev, state, files)
    print(f"pv_lxc demo: {args.rev} {progress.get('status')}: {progress.get('status-msg')}", flush=True)
    with PvClient(args.socket) as client:
        deadline = time.monotonic() + 30
        while True:
            containers = client.containers()
            if all(c["status"] == c["status_goal"] for c in containers) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    for c in containers:
        print(f"  {c['name']:<12} {c['group']:<9} {c['status']:<8} roles={c['roles']}", flush=True)
    return 0 if progress.get("status") in ("TESTING", "UPDATED", "DONE") else 1


if __name__ == "__main__":
    sys.exit(main())
