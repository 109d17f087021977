"""pvcore-client as a container installs it: a wheel, alone in a fresh venv.

It must bring none of the server's dependencies, and its ``pvcontrol`` must
work against a real pvcore.
"""
import glob
import json
import os
import subprocess
import sys
import venv

import pytest

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "pvcore-client")
SERVER_ONLY = ("falcon", "gunicorn", "pluggy", "structlog", "pvcore")


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    """A fresh venv holding the pvcore-client wheel and nothing else."""
    base = tmp_path_factory.mktemp("client")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(base / "dist"), PACKAGE], check=True)
    (wheel,) = glob.glob(str(base / "dist" / "pvcore_client-*.whl"))
    fresh = base / "venv"
    venv.create(fresh, with_pip=False)
    # pip from the environment running the tests, installing into the fresh
    # venv's interpreter (scripts included); what the wheel requires comes
    # from the package index, which is why it must require nothing.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh / "bin" / "python"), "install", "-q",
                    "--no-index", wheel], check=True)
    return fresh


def test_the_client_installs_without_the_servers_dependencies(client_venv):
    python = str(client_venv / "bin" / "python")
    listing = subprocess.run([python, "-c", "import importlib.metadata as m, json; "
                              "print(json.dumps(sorted(d.metadata['Name'] for d in m.distributions())))"],
                             capture_output=True, text=True, check=True, cwd=client_venv).stdout
    assert json.loads(listing) == ["pvcore-client"]
    for module in SERVER_ONLY:
        # cwd: not the checkout, whose pvcore/ a `python -c` would import
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True, cwd=client_venv)
        assert found.returncode != 0, f"{module} is importable beside the client alone"


@pytest.mark.gunicorn
def test_installed_pvcontrol_works_against_a_real_server(client_venv, start_gunicorn):
    server = start_gunicorn(demo=True)
    proc = subprocess.run([str(client_venv / "bin" / "pvcontrol"), "-s", server.socket, "containers", "ls"],
                          capture_output=True, timeout=30, env={"PATH": os.environ.get("PATH", "")},
                          cwd=client_venv)
    assert proc.returncode == 0, proc.stderr
    names = [container["name"] for container in json.loads(proc.stdout)]
    assert "pv-example-unix-server" in names
    library = subprocess.run(
        [str(client_venv / "bin" / "python"), "-c",
         "import sys, pvcore_client; c = pvcore_client.PvClient(sys.argv[1]); print(c.request('GET', '/buildinfo').status)",
         server.socket], capture_output=True, text=True, timeout=30, cwd=client_venv)
    assert library.stdout.strip() == "200", library.stderr
