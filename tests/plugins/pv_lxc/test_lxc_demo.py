"""`make run-lxc`'s installer (python -m pv_lxc.demo) as a user meets it: a
second start never replaces the revision the user runs."""
import json
import shutil

import pytest

from pv_lxc import demo

pytestmark = [pytest.mark.gunicorn,
              pytest.mark.skipif(shutil.which("mksquashfs") is None or shutil.which("busybox") is None,
                                 reason="the demo builds its rootfs with mksquashfs and a static busybox "
                                        "(make test installs squashfs-tools, busybox-static)")]


def test_a_running_revision_of_the_users_is_kept(start_gunicorn, capsys):
    # The process runtime stands in for LXC: the installer only speaks HTTP.
    server = start_gunicorn(demo=True)  # the user's revision 0 runs
    status, _, body = server.request("GET", "/device-meta")
    assert json.loads(body)["pantavisor.revision"] == "0"

    assert demo.main(["--socket", server.socket]) == 0

    out = capsys.readouterr().out
    assert "keeping the running revision 0" in out
    _, _, body = server.request("GET", "/device-meta")
    assert json.loads(body)["pantavisor.revision"] == "0"
    _, _, body = server.request("GET", "/steps")
    assert "locals/lxc-demo" not in body.decode()
