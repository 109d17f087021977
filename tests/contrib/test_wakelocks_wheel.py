"""pvcore-wakelocks as a user would install it: a wheel, in a fresh venv beside pvcore."""
import glob
import os
import subprocess
import sys
import sysconfig
import venv

import pytest

from pvcore.testing import GunicornServer, short_tempdir

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "pvcore-wakelocks")


@pytest.mark.gunicorn
def test_wheel_installs_and_serves_wakelocks(tmp_path, pvcore_plugins):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), PACKAGE], check=True)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "pvcore_wakelocks-*.whl"))

    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    site = fresh / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    # pvcore and its dependencies come from the environment running the tests;
    # the plugin only from its wheel, installed into the fresh venv.
    (site / "_pvcore_base.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
                   check=True)
    python = str(fresh / "bin" / "python")
    where = subprocess.run([python, "-c", "import pvcore_wakelocks; print(pvcore_wakelocks.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))

    only = {} if pvcore_plugins is None else {"PVCORE_PLUGINS": ",".join([*pvcore_plugins, "pvcore_wakelocks"])}
    server = GunicornServer(short_tempdir(), only)
    server.python = python
    try:
        server.start()
        status, doc = server.client().json("GET", "/wakelocks")
        assert status == 200
        assert doc["mode"] == "locks" and doc["held"]["update"] is False
    finally:
        server.stop()
