"""python -m pvcore_dev.newplugin: the starter installs, and its own tests pass."""
import os
import subprocess
import sys

import pytest

from pvcore_dev import newplugin


def test_the_starter_installs_and_its_tests_pass(tmp_path):
    assert newplugin.main(["net-stats", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "pvcore-net-stats"
    site = tmp_path / "site"
    # Installed as a user would (a wheel built from its pyproject), but into a
    # directory of its own, so nothing leaks into the environment running the suite.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(root)], check=True)
    assert (site / "pvcore_net_stats" / "__init__.py").exists()
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_starter_has_one_route_one_setting_one_service():
    module = newplugin.render("net-stats")["pvcore_net_stats/__init__.py"]
    assert '("/net-stats", SamplesResource(' in module
    assert 'Setting("net_stats_interval", float' in module
    assert 'LoopService("net-stats.sampler"' in module
    assert "core.data_dir(PLUGIN)" in module


@pytest.mark.parametrize("name", ["", "Net", "1net", "net/x", "a" * 40])
def test_a_bad_name_is_refused(tmp_path, name, capsys):
    assert newplugin.main([name, "--dir", str(tmp_path)]) == 1
    assert "newplugin: plugin name" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_an_existing_directory_is_never_overwritten(tmp_path):
    (tmp_path / "pvcore-net").mkdir()
    assert newplugin.main(["net", "--dir", str(tmp_path)]) == 1
    assert os.listdir(tmp_path / "pvcore-net") == []
