"""Deploying from the wheel, as docs/deploy.md tells a device maker: the
units `pvcore-deploy units` writes, and the whole walk-through — wheel, fresh
venv, units, start as the unit does from an empty working directory, serve,
stop, nothing left, nothing written outside the configured directories."""
import configparser
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from pvcore_demo import demo_state
from pvcore.deploy import declared_settings, install_units, main, settings_template
from pvcore.settings import SettingsError
from pvcore.testing import UnixHTTPConnection, short_tempdir, wait_until

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def test_units_run_this_interpreters_gunicorn_and_pin_only_the_settings_file(tmp_path):
    written = install_units(root=str(tmp_path))
    service = tmp_path / "etc/systemd/system/pvcore.service"
    conf = tmp_path / "etc/pvcore/pvcore.conf"
    assert sorted(written) == sorted(map(str, [conf, service, tmp_path / "etc/systemd/system/pvcore.socket"]))
    unit = _unit(service)
    assert unit["Service"]["ExecStart"] == f"{sys.prefix}/bin/gunicorn -c python:pvcore.gunicorn_conf"
    assert unit["Service"]["Environment"] == "PVCORE_SETTINGS_FILE=/etc/pvcore/pvcore.conf"
    assert unit["Service"]["Type"] == "notify"
    assert "RuntimeDirectory" not in unit["Service"]
    assert _unit(tmp_path / "etc/systemd/system/pvcore.socket")["Socket"]["ListenStream"] == \
        "/run/pantavisor/pv/pv-ctrl"
    # Every setting is in the file, commented out at its (device) default.
    text = conf.read_text()
    assert "# storage_dir = /storage" in text and "# container_runtime = lxc" in text
    assert "# power_backend = system" in text and "# update_commit_delay = 25.0" in text


def test_the_socket_unit_follows_the_settings_file_which_is_never_overwritten(tmp_path):
    conf = tmp_path / "etc/pvcore/pvcore.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("run_dir = /run/mine\n")
    install_units(root=str(tmp_path))
    assert conf.read_text() == "run_dir = /run/mine\n"
    assert _unit(tmp_path / "etc/systemd/system/pvcore.socket")["Socket"]["ListenStream"] == "/run/mine/pv-ctrl"
    conf.write_text("run_dir = relative/run\n")
    with pytest.raises(SettingsError, match="absolute"):
        install_units(root=str(tmp_path))
    conf.write_text("stroage_dir = /typo\n")
    assert main(["units", "--root", str(tmp_path)]) == 2


def test_the_template_lists_every_declared_setting():
    settings = declared_settings()
    text = settings_template(settings)
    for entry in settings.describe():
        if entry["type"] != "callable" and entry["name"] not in ("demo", "demo_seed"):
            assert f"# {entry['name']} = " in text


def _build_wheels(dist):
    # pvcore and every distribution of this repository it may depend on.
    projects = [ROOT] + [os.path.dirname(p) for p in glob.glob(os.path.join(ROOT, "contrib", "*", "pyproject.toml"))]
    for project in projects:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", dist, project], check=True, capture_output=True)


def _processes_with(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files)


@pytest.mark.gunicorn
@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate stands in for systemd's socket unit (Debian's systemd package)")
def test_deploy_walkthrough_from_the_wheel(tmp_path):
    base = short_tempdir()
    try:
        _walkthrough(tmp_path, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _walkthrough(tmp_path, base):
    # 1. Build the wheels; install into a fresh venv (not editable); pip check.
    dist = str(tmp_path / "dist")
    _build_wheels(dist)
    venv = str(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip"]
    (wheel,) = glob.glob(os.path.join(dist, "pvcore-*.whl"))
    subprocess.run(pip + ["install", "-q", "--find-links", dist, wheel], check=True)
    subprocess.run(pip + ["check"], check=True)

    # 2. The units, staged under a root; the settings file moves storage and run dirs there.
    root = os.path.join(base, "root")
    subprocess.run([os.path.join(venv, "bin", "pvcore-deploy"), "units", "--root", root], check=True)
    conf = os.path.join(root, "etc/pvcore/pvcore.conf")
    storage, run = os.path.join(base, "storage"), os.path.join(base, "run")
    lines = [f"storage_dir = {storage}", f"run_dir = {run}", "log_format = json"]
    if os.geteuid() != 0 or shutil.which("lxc-start") is None:
        lines.append("container_runtime = process")  # a device without LXC
    with open(conf, "a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
    # Moving run_dir moves the socket: the units are written again.
    subprocess.run([os.path.join(venv, "bin", "pvcore-deploy"), "units", "--root", root], check=True)
    service = _unit(os.path.join(root, "etc/systemd/system/pvcore.service"))["Service"]
    sock_path = _unit(os.path.join(root, "etc/systemd/system/pvcore.socket"))["Socket"]["ListenStream"]
    assert sock_path == os.path.join(run, "pv-ctrl")

    # 3. Provision a factory revision in upstream's layout (docs/deploy.md):
    # here the demo's BSP alone, which runs under any runtime.
    state, objects = demo_state()
    state = {key: value for key, value in state.items() if key == "#spec" or key.startswith("bsp/")}
    os.makedirs(os.path.join(storage, "objects"))
    for key, sha in state.items():
        if isinstance(sha, str) and sha in objects:
            with open(os.path.join(storage, "objects", sha), "wb") as fh:
                fh.write(objects[sha])
    os.makedirs(os.path.join(storage, "trails", "0", ".pvr"))
    with open(os.path.join(storage, "trails", "0", ".pvr", "json"), "w") as fh:
        json.dump(state, fh)

    # 4. Start it as systemd would: socket activation, Type=notify, the unit's
    # environment only, from an empty working directory and an empty home.
    cwd, home = os.path.join(base, "cwd"), os.path.join(base, "home")
    os.makedirs(cwd)
    os.makedirs(home)
    os.makedirs(run)
    # The staged root stands for /: the unit's settings file is ours.
    assert service["Environment"] == "PVCORE_SETTINGS_FILE=/etc/pvcore/pvcore.conf"
    notify_path = os.path.join(base, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    env = {"PATH": os.environ["PATH"], "HOME": home, "PVCORE_SETTINGS_FILE": conf, "NOTIFY_SOCKET": notify_path}
    log_path = os.path.join(base, "journal.log")
    with open(log_path, "wb") as log:
        # systemd-socket-activate hands on only PATH, HOME and what -E names.
        setenv = [arg for name in ("PVCORE_SETTINGS_FILE", "NOTIFY_SOCKET") for arg in ("-E", f"{name}={env[name]}")]
        proc = subprocess.Popen(["systemd-socket-activate", "-l", sock_path, *setenv, *shlex.split(service["ExecStart"])],
                                env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    marker = f"PVCORE_SETTINGS_FILE={conf}"
    try:
        wait_until(lambda: os.path.exists(sock_path), 10, 0.05, "the socket")

        def healthy():
            try:
                conn = UnixHTTPConnection(sock_path, timeout=5)
                status, doc = conn.json("GET", "/_pvcore/health")
                conn.close()
                return status == 200 and doc["status"] == "ok"
            except (OSError, ValueError):
                return False

        wait_until(healthy, 60, 0.1, "the deployed pvcore to serve")
        notify.settimeout(10)
        assert b"READY=1" in notify.recv(4096)
        conn = UnixHTTPConnection(sock_path)
        status, settings = conn.json("GET", "/_pvcore/settings")
        assert status == 200
        values = {s["name"]: (s["value"], s["source"]) for s in settings}
        assert values["storage_dir"] == (storage, "file")
        assert values["power_backend"] == ("system", "default")
        assert values["update_commit_delay"] == (25.0, "default")
        assert values["demo"] == (False, "default")
        assert conn.json("GET", "/containers") == (200, [])
        assert conn.json("GET", "/steps/current") == (200, state)
        progress = conn.json("GET", "/steps/0/progress")[1]
        assert (progress["status"], progress["status-msg"]) == ("DONE", "Factory revision")
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(45)
        notify.close()
    assert code == 0, open(log_path).read()[-3000:]

    # 5. Nothing left, nothing written outside the configured directories.
    wait_until(lambda: not _processes_with(marker), 10, 0.1, "every process of the deployed pvcore to end")
    assert os.listdir(cwd) == [] and os.listdir(home) == []
    assert sorted(os.listdir(base)) == ["cwd", "home", "journal.log", "notify", "root", "run", "storage"]
    assert _tree(root) == ["etc/pvcore/pvcore.conf", "etc/systemd/system/pvcore.service",
                           "etc/systemd/system/pvcore.socket"]
    # Every line of pvcore's is a JSON object (systemd-socket-activate's own aside).
    lines = [line for line in open(log_path).read().splitlines()
             if not line.startswith(("Listening on ", "Communication attempt ", "Execing "))]
    assert lines and all(json.loads(line) for line in lines)
