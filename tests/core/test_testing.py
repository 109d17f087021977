"""pvcore.testing as a third-party plugin's test suite meets it (pytest11)."""
import subprocess
import sys


def _pytest(tmp_path, *args):
    # Run in an empty directory: no setup.cfg of ours, only the pytest11 plugin.
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_every_fixture_of_the_kit_has_its_signature_in_pytest_fixtures(tmp_path):
    out = _pytest(tmp_path, "--fixtures").stdout
    for line in ("make_core(plugins=(), overrides=None, load_entrypoints=False, disabled=()) -> pvcore.app.Core",
                 "make_client(core, pid=None) -> PvTestClient",
                 "start_gunicorn(env=None, demo=False, timeout=30.0, base=None, plugins=()) -> GunicornServer",
                 "A GunicornServer running the demo device",
                 "The structlog events logged during the test",
                 "The session's plugin set (``pvcore_plugins`` ini option)"):
        assert line in out


def test_the_kit_registers_its_markers_for_strict_suites(tmp_path):
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.gunicorn\n@pytest.mark.slow\ndef test_marked():\n    pass\n")
    result = _pytest(tmp_path, "-q", "--strict-markers")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
