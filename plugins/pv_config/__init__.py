"""Configuration: ``GET /config``, ``GET /config2`` and the config hooks (docs/protocol.md §7.12).

Every entry of upstream's table (:mod:`pv_config.table`) holds one value per
level (:mod:`pv_config.state`); levels used here, low → high: ``default``
(with the demo device's paths and init mode), ``pv conf file``
(``KEY=VALUE`` lines of ``pantavisor.config``), ``env`` (variables named
like the keys), ``metadata`` (user metadata, learnt from ``meta.user``
events) and ``command`` (``pv_config_set``). The contract is in
:mod:`pv_config.hookspecs`; pv_config depends on no other plugin.
"""
from __future__ import annotations

import os

import structlog

from pvcore import hookimpl
from pvcore.ownership import Owns
from pvcore.app import StashKey
from pvcore.settings import Setting

from pv_config.resources import MASK, ConfigFull, ConfigLegacy
from pv_config.state import Config
from pv_config.table import build_entries
from pv_config.values import as_python, as_text

log = structlog.get_logger(__name__)

CONFIG = StashKey()


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        paths={"<storage>/config/pantavisor.config": "Pantavisor's KEY=VALUE configuration (read, never written)"},
        events={"config.changed": "a configuration entry's effective value changed (data: value, level)"},
        listens=("meta.user",),
    )


def _environ():
    return os.environ


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("pv_config_file", str, "",
                "Pantavisor's KEY=VALUE configuration file (level 'pv conf file'); "
                "empty means <storage_dir>/config/pantavisor.config. A missing file is fine."),
        Setting("config_environ", callable, _environ,
                "Function returning the mapping the 'env' configuration level reads "
                "(PV_*/PH_* variables named like the entries); tests inject their own."),
    ]


def read_config_file(path: str):
    """``(key, value)`` pairs of a ``KEY=VALUE`` file; ``#`` comments, quotes stripped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("config_file_unreadable", path=path, error=str(exc))
        return []
    pairs = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        pairs.append((key.strip(), value))
    return pairs


def _entries(settings):
    substitutions = {"storage": settings.storage_dir, "run": settings.run_dir, "init_mode": settings.init_mode}
    try:
        return build_entries(substitutions)
    except ValueError:
        log.warning("config_init_mode_invalid", init_mode=settings.init_mode)
        return build_entries(dict(substitutions, init_mode="embedded"))


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_config import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pvcore_startup(core):
    settings = core.settings
    config = Config(_entries(settings))
    path = settings.get("pv_config_file") or os.path.join(settings.storage_dir, "config", "pantavisor.config")
    config.load_pairs(read_config_file(path), "pv conf file", path)
    environ = settings.get("config_environ")()
    config.load_pairs(((e.key, environ[e.key]) for e in config.entries if e.key in environ), "env", "environment")
    config.on_change = lambda entry, value, level: core.publish("config.changed", entry.key, {
        "value": MASK if entry.secret and value is not None else as_text(entry.type, value), "level": level})
    core.stash[CONFIG] = config


@hookimpl
def pvcore_routes(core):
    config = core.stash[CONFIG]
    return [("/config", ConfigLegacy(config)), ("/config2", ConfigFull(config))]


@hookimpl
def pvcore_event(core, event):
    if event.type == "meta.user":
        config = core.stash.get(CONFIG)
        if config is not None:
            config.meta_changed(event.subject, event.data.get("value"))


@hookimpl
def pv_config_get(core, key):
    config = core.stash[CONFIG]
    entry = config.resolve(key)
    if entry is None:
        return None
    value, _level = config.effective(entry)
    return as_python(entry.type, value)


@hookimpl
def pv_config_set(core, key, value, level):
    return core.stash[CONFIG].set(key, value, level)
