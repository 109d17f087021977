"""Deploying pvcore from its wheel: systemd units and the settings file.

``pvcore-deploy units`` writes ``pvcore.service`` and ``pvcore.socket`` for
the interpreter it runs in (``<sys.prefix>/bin/gunicorn -c
python:pvcore.gunicorn_conf``) and, when missing, a settings file listing every
setting of the installed plugins with its default and help, all commented
out. ``pvcore-deploy settings`` prints that list. docs/deploy.md walks a
device maker through it.

The units pin no setting but the settings file's path: the socket unit's
``ListenStream`` is the ``socket`` setting as that file says it, so after
moving ``run_dir`` or ``socket`` run ``pvcore-deploy units`` again.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from importlib import resources
from typing import List, Optional, Sequence

from pvcore.boot import declare_plugin_settings
from pvcore.errors import StartupError
from pvcore.plugins import get_plugin_manager
from pvcore.settings import Settings, SettingsError

DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_SETTINGS_FILE = "/etc/pvcore/pvcore.conf"
UNITS = ("pvcore.service", "pvcore.socket")
#: What a device maker decides before the first start (docs/deploy.md, "Settings to review").
REVIEW = ("storage_dir", "run_dir", "buildinfo", "container_runtime", "power_backend", "driver_loader",
          "caller_host_uids", "caller_host_cgroups")


def declared_settings(settings_file: Optional[str] = None) -> Settings:
    """The settings of pvcore and every installed plugin, valued from
    ``settings_file`` and the defaults only (a unit pins no environment).

    :raises SettingsError: the file cannot be read.
    :raises StartupError: it names an unknown setting or a bad value, as at boot.
    """
    settings = Settings(env={}, file=settings_file or "")
    declare_plugin_settings(settings, get_plugin_manager())
    return settings


def settings_template(settings: Settings) -> str:
    """A settings file with every setting commented out at its default."""
    out = [
        "# pvcore settings: `name = value` lines; the environment (PVCORE_<NAME>) wins over this file.",
        "# Every line below is commented out at its default, which is a device's (docs/deploy.md).",
        "# Review at least: " + ", ".join(REVIEW) + ".",
        "",
    ]
    for entry in settings.describe():
        if entry["type"] == "callable" or entry["name"] in ("demo", "demo_seed"):
            continue
        out += ["# " + line for line in textwrap.wrap(f"[{entry['owner']}] {entry['help']}", 96)]
        default = entry["default"]
        shown = ("1" if default else "0") if isinstance(default, bool) else default
        out += [f"# {entry['name']} = {shown}", ""]
    return "\n".join(out)


def _absolute(path: str, what: str) -> str:
    if not os.path.isabs(path):
        raise SettingsError(f"{what} must be an absolute path, not {path!r}")
    return path


def render_units(settings: Settings, settings_file: str, prefix: str = sys.prefix) -> dict:
    """``{unit name: text}`` for this interpreter's prefix and the settings' socket."""
    socket = _absolute(settings.socket_path, "the socket setting")
    values = {"@PREFIX@": prefix, "@SETTINGS_FILE@": _absolute(settings_file, "the settings file"),
              "@SOCKET@": socket}
    units = {}
    for name in UNITS:
        text = resources.files(__name__).joinpath(name + ".in").read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(key, value)
        units[name] = text
    return units


def install_units(unit_dir: str = DEFAULT_UNIT_DIR, settings_file: str = DEFAULT_SETTINGS_FILE,
                  prefix: str = sys.prefix, root: str = "/") -> List[str]:
    """Write the units into ``root/unit_dir`` and, if it does not exist yet, the
    settings template to ``root/settings_file``; return the paths written.

    ``root`` stages an image (or a test) instead of the running system; the
    units name ``settings_file`` as the device will see it.
    """
    def staged(path: str) -> str:
        return os.path.join(root, _absolute(path, "a path").lstrip("/"))

    written = []
    conf = staged(settings_file)
    if not os.path.exists(conf):
        os.makedirs(os.path.dirname(conf), mode=0o755, exist_ok=True)
        _write(conf, settings_template(declared_settings()))
        written.append(conf)
    settings = declared_settings(conf)
    for name, text in render_units(settings, settings_file, prefix).items():
        path = staged(os.path.join(unit_dir, name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write(path, text)
        written.append(path)
    return written


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``pvcore-deploy``: ``units`` installs the systemd units, ``settings`` prints every setting."""
    parser = argparse.ArgumentParser(prog="pvcore-deploy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    units = sub.add_parser("units", help="write pvcore.service, pvcore.socket and (if missing) the settings file")
    units.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR)
    units.add_argument("--settings-file", default=DEFAULT_SETTINGS_FILE)
    units.add_argument("--root", default="/", help="stage into this directory instead of / (an image, a test)")
    settings = sub.add_parser("settings", help="print every setting, commented out at its default")
    settings.add_argument("--settings-file", default="", help="show values from this file's view instead")
    args = parser.parse_args(argv)
    try:
        if args.command == "settings":
            sys.stdout.write(settings_template(declared_settings(args.settings_file)) + "\n")
            return 0
        for path in install_units(args.unit_dir, args.settings_file, root=args.root):
            print(f"wrote {path}")
    except (SettingsError, StartupError, OSError) as exc:
        print(f"pvcore-deploy: {exc}", file=sys.stderr)
        return 2
    print("next: systemctl daemon-reload && systemctl enable --now pvcore.socket pvcore.service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
