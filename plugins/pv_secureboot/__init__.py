"""pv_secureboot: may this revision run? State signatures and artifact checksums.

Implements the trust contract (:mod:`pv_secureboot.hookspecs`) pv_steps asks
at ``PUT /steps/locals/{name}``, before a transition runs a revision and for
the running revision at start-up (docs/protocol.md §D12). Settings are
pv_config's entries, read at each check, so every level (the conf file, env
``PV_*``) applies as upstream's does; without pv_config, upstream's defaults.
"""
from __future__ import annotations

from typing import Optional

import structlog

from pvcore import hookimpl
from pvcore.ownership import Owns

from pv_secureboot import checksum, pvs

log = structlog.get_logger(__name__)

#: Upstream's defaults, used for an entry pv_config does not answer.
DEFAULTS = {
    "PV_SECUREBOOT_MODE": pvs.LENIENT,
    "PV_SECUREBOOT_CHECKSUM": True,
    "PV_SECUREBOOT_TRUSTSTORE": "ca-certificates",
    "PV_SECUREBOOT_OEM_TRUSTSTORE": "ca-oem-certificates",
    "PV_SYSTEM_ETCDIR": "/etc",
    "PV_OEM_NAME": None,
}


def _config(core, key: str):
    value = core.call("pv_config_get", default=None, key=key)
    return DEFAULTS[key] if value is None else value


def mode(core) -> str:
    value = _config(core, "PV_SECUREBOOT_MODE")
    return value if value in pvs.MODES else pvs.LENIENT


def trust(core) -> pvs.Trust:
    return pvs.Trust(
        etc_dir=_config(core, "PV_SYSTEM_ETCDIR"),
        truststore=_config(core, "PV_SECUREBOOT_TRUSTSTORE"),
        oem_truststore=_config(core, "PV_SECUREBOOT_OEM_TRUSTSTORE"),
        oem_name=_config(core, "PV_OEM_NAME") or None,
    )


@hookimpl
def pvcore_declare_ownership():
    # Nothing under <storage> or <run>: it reads the integrator's truststores
    # under PV_SYSTEM_ETCDIR, publishes no event and listens to none.
    return Owns(listens=())


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_secureboot import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pv_secureboot_verify_state(core, path) -> Optional[str]:
    current = mode(core)
    try:
        result = pvs.verify_state(path, current, trust(core))
    except Exception:  # fail closed, never a 500 nor a worker that cannot boot
        log.exception("secureboot_check_crashed", path=path)
        result = pvs.INTERNAL
    if result is not None:
        log.warning("secureboot_state_refused", path=path, mode=current, result=result)
    return result


@hookimpl
def pv_secureboot_corrupt_objects(core, objects):
    if not _config(core, "PV_SECUREBOOT_CHECKSUM"):
        return []
    bad = checksum.corrupt_objects(objects, lambda sha: core.call("pv_objects_object_path", default=None, sha=sha))
    if bad:
        log.warning("secureboot_objects_corrupt", count=len(bad), first=[key for key, _ in bad[:5]])
    return [key for key, _ in bad]
