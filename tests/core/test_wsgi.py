"""pvcore.wsgi under gunicorn: a plugin mistake stops the boot in one line."""
import shutil

import pytest

from pvcore.testing import GunicornServer, short_tempdir

pytestmark = pytest.mark.gunicorn


@pytest.mark.parametrize("source, line", [
    ("from pvcore import hookimpl\n\n@hookimpl\ndef pvcore_startup(core):\n    raise RuntimeError('boom')\n",
     "pvcore cannot boot: plugin pvcore_brokenboot (pvcore-brokenboot 0.1): pvcore_startup raised: "
     "RuntimeError: boom"),
    ("from pvcore import hookimpl\n\nclass S:\n    name = 'brokenboot.sampler'\n"
     "    def start(self):\n        raise OSError('no sensor')\n    def stop(self):\n        pass\n\n"
     "@hookimpl\ndef pvcore_services(core):\n    return [S()]\n",
     "pvcore cannot boot: plugin pvcore_brokenboot (pvcore-brokenboot 0.1): service brokenboot.sampler "
     "failed to start: OSError: no sensor"),
], ids=["startup", "service"])
def test_a_plugin_mistake_stops_the_boot_with_one_line_and_no_traceback(tmp_path, source, line):
    (tmp_path / "pvcore_brokenboot.py").write_text(source)
    dist = tmp_path / "pvcore_brokenboot-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pvcore-brokenboot\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pvcore]\npvcore_brokenboot = pvcore_brokenboot\n")
    server = GunicornServer(short_tempdir(), {"PYTHONPATH": str(tmp_path)})
    try:
        with pytest.raises(AssertionError, match="exited with 4"):
            server.start(timeout=20)
        log = server.log_text()
    finally:
        shutil.rmtree(server.base, ignore_errors=True)
    assert line + "\n" in log
    assert "Traceback" not in log and '"exception"' not in log
