"""A starter for a new plugin: ``python -m pvcore_dev.newplugin NAME [--dir DIR]``.

Writes ``DIR/pvcore-NAME/``, a pip-installable package with one route
(``GET /NAME``), one setting (``NAME_interval``), one service (a sampler
thread), a file kept in the plugin's storage folder, and its tests::

    pvcore-NAME/
      pyproject.toml          the package and its one entry point
      README.md
      pvcore_NAME/__init__.py the hooks
      tests/test_NAME.py      in-process tests with pvcore.testing

``pip install -e pvcore-NAME && pytest pvcore-NAME/tests`` passes as
generated; docs/plugins.md explains every piece.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from string import Template
from typing import Dict

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "GET /$name for pvcore"
readme = "README.md"
requires-python = ">=3.9"
dependencies = ["pvcore>=0.1"]

[project.optional-dependencies]
test = ["pytest>=7"]

# The one line that makes this a pvcore plugin: its name is the plugin's name
# (PVCORE_DISABLE_PLUGINS=$module leaves it out).
[project.entry-points.pvcore]
$module = "$module"

[tool.setuptools]
packages = ["$module"]
'''

README = '''\
# $dist

A pvcore plugin serving `GET /$name`: the load average, sampled every
`PVCORE_${upper}_INTERVAL` seconds by a background thread; the last sample is
kept in the plugin's storage folder across restarts.

```sh
pip install -e .            # beside pvcore; gunicorn then serves GET /$name
pytest tests                # the pvcore.testing fixtures come with pvcore
```

How each piece works: pvcore's docs/plugins.md.
'''

MODULE = '''\
"""$dist: ``GET /$name``, the load average sampled in the background.

One route, one setting, one service and one file in the plugin's own storage
folder; only pvcore's public API is imported (docs/plugins.md).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque

from pvcore import hookimpl
from pvcore.stash import StashKey
from pvcore.body import dumps
from pvcore.fsutil import atomic_write
from pvcore.services import LoopService
from pvcore.settings import Setting

PLUGIN = "$module"
STATE = StashKey()


class Samples:
    """The last samples. gunicorn serves requests from several threads while
    the sampler thread appends: every access holds the lock."""

    def __init__(self, folder: str, keep: int = 60):
        self._path = os.path.join(folder, "last.json")
        self._lock = threading.Lock()
        self._samples = deque(maxlen=keep)
        try:
            with open(self._path) as fh:
                self._samples.append(json.load(fh))  # what the last run saw
        except (OSError, ValueError):
            pass

    def sample(self) -> None:
        sample = {"time": time.time(), "load": os.getloadavg()[0]}
        with self._lock:
            self._samples.append(sample)

    def snapshot(self) -> list:
        with self._lock:
            return list(self._samples)

    def save(self) -> None:
        samples = self.snapshot()
        if samples:
            atomic_write(self._path, json.dumps(samples[-1]))


@hookimpl
def pvcore_declare_settings():
    return [Setting("${module_setting}_interval", float, 5.0, "Seconds between two samples of GET /$name.")]


@hookimpl
def pvcore_startup(core):
    # State only: no thread, no process here (that is pvcore_services' job).
    core.stash[STATE] = Samples(core.data_dir(PLUGIN))


class SamplesResource:
    """``GET /$name``: the samples, oldest first; mgmt callers only (the default)."""

    def __init__(self, samples: Samples):
        self._samples = samples

    def on_get(self, req, resp):
        resp.data = dumps({"samples": self._samples.snapshot()})


@hookimpl
def pvcore_routes(core):
    return [("/$name", SamplesResource(core.stash[STATE]))]


@hookimpl
def pvcore_services(core):
    samples = core.stash[STATE]
    return [LoopService("$name.sampler", samples.sample, core.settings.get("${module_setting}_interval"))]


@hookimpl
def pvcore_shutdown(core):
    core.stash[STATE].save()
'''

TEST = '''\
"""$dist's tests: pvcore.testing's fixtures come with pvcore (pytest --fixtures)."""
import $module
from pvcore.testing import wait_until


def test_the_sampler_fills_get_${module_setting}_and_the_last_sample_survives_a_restart(make_core, make_client):
    core = make_core(plugins=[$module], overrides={"${module_setting}_interval": 0.01})
    core.start()
    client = make_client(core)
    samples = wait_until(lambda: client.simulate_get("/$name").json["samples"])
    assert {"time", "load"} <= set(samples[0])
    core.stop()

    again = make_core(plugins=[$module], overrides={"storage_dir": core.settings.storage_dir})
    assert make_client(again).simulate_get("/$name").json["samples"]


def test_the_installed_package_is_found_through_its_entry_point(make_core):
    core = make_core(load_entrypoints=True)
    assert core.pm.has_plugin("$module")
    assert core.routes["/$name"].methods["GET"].startswith("$module ($dist ")
'''


def render(name: str) -> Dict[str, str]:
    """The files of the starter for plugin ``name``: relative path -> text."""
    if not NAME.match(name):
        raise ValueError(f"plugin name {name!r}: use lowercase letters, digits, '-' or '_', starting with a letter")
    module = "pvcore_" + name.replace("-", "_")
    values = {
        "name": name,
        "module": module,
        "module_setting": name.replace("-", "_"),
        "upper": name.replace("-", "_").upper(),
        "dist": "pvcore-" + name.replace("_", "-"),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{module}/__init__.py": MODULE,
        f"tests/test_{values['module_setting']}.py": TEST,
    }
    return {path: Template(text).substitute(values) for path, text in files.items()}


def create(name: str, where: str = ".") -> str:
    """Write the starter under ``where``; return its directory.

    :raises FileExistsError: the directory exists already (nothing is overwritten).
    """
    files = render(name)
    root = os.path.join(where, "pvcore-" + name.replace("_", "-"))
    os.makedirs(root)
    for path, text in files.items():
        target = os.path.join(root, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as fh:
            fh.write(text)
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pvcore_dev.newplugin", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the plugin's name: its route is GET /NAME, its package pvcore_NAME")
    parser.add_argument("--dir", default=".", help="where to create pvcore-NAME/ (default: here)")
    args = parser.parse_args(argv)
    try:
        root = create(args.name, args.dir)
    except (ValueError, FileExistsError) as exc:
        print(f"newplugin: {exc}", file=sys.stderr)
        return 1
    print(f"created {root}: pip install -e {root} && pytest {os.path.join(root, 'tests')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
