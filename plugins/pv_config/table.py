"""The configuration entry table (docs/protocol.md §7.12), in upstream order."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from pv_config.values import BOOL, DURATION, INT, MASK, STR, parse

#: Levels, low → high (docs/protocol.md §D9.1); a higher level overrides a lower one.
LEVELS = ("default", "args", "pv conf file", "ph conf file", "ph client", "policy", "oem config",
          "pv cmdline", "ph cmdline", "env", "metadata", "command")
RUNTIME_LEVELS = ("metadata", "command")
RANK = {name: index for index, name in enumerate(LEVELS)}

#: Entries that may change at run time (user metadata, commands).
RUNTIME = frozenset("""
PH_LIBEVENT_HTTP_TIMEOUT PH_LIBEVENT_HTTP_RETRIES PH_METADATA_DEVMETA_INTERVAL PH_METADATA_USRMETA_INTERVAL
PH_ONLINE_REQUEST_THRESHOLD PH_UPDATER_INTERVAL PH_UPDATER_NETWORK_TIMEOUT PH_UPDATER_TRANSFER_MAX_COUNT
PV_DEBUG_SSH PV_DEBUG_SSH_AUTHORIZED_KEYS PV_LIBTHTTP_LOG_LEVEL PV_LOG_DIR_MAXSIZE
PV_LOG_FILETREE_TIMESTAMP_FORMAT PV_LOG_SINGLEFILE_TIMESTAMP_FORMAT PV_LOG_STDOUT_TIMESTAMP_FORMAT
PV_LOG_HYSTERESIS_FACTOR PV_LOG_LEVEL PV_LOG_PUSH PV_LOG_ROTATE_FACTOR PV_LOG_SERVER_OUTPUTS PV_LOG_TIMESTAMP
PV_POWER_MODE PV_POWER_DEVMETA_EAGER_PUSH PV_POWER_WAKE_INTERVAL PV_POWER_WAKE_RUN_WINDOW
PV_POWER_AUTOSLEEP_SETTLE PV_POWER_WAKE_MIN_AWAKE PV_POWER_WAKE_MAX_AWAKE PV_POWER_DEVMETA_MAX_HELD
PV_POWER_SYSFS_DIR PV_REVISION_RETRIES PV_STORAGE_GC_KEEP_FACTORY PV_STORAGE_GC_RESERVED
PV_STORAGE_GC_THRESHOLD PV_STORAGE_GC_THRESHOLD_DEFERTIME PV_UPDATER_COMMIT_DELAY PV_UPDATER_USE_TMP_OBJECTS
""".split())

SECRETS = frozenset(("PH_CREDS_SECRET", "PH_FACTORY_AUTOTOK"))

#: Aliases accepted as input names only; they never appear in ``/config``.
INPUT_ALIASES = {"meta.cache.dir": "PV_CACHE_USRMETADIR", "pantahub.log.push": "PV_LOG_PUSH",
                 "updater.keep_factory": "PV_STORAGE_GC_KEEP_FACTORY"}

# key, type, default (text as a config file would give it; None = unset), /config alias
_TABLE: Sequence[Tuple[str, str, Optional[str], Optional[str]]] = (
    ("PH_CREDS_HOST", STR, "api.pantahub.com", "creds.host"),
    ("PH_CREDS_ID", STR, None, "creds.id"),
    ("PH_CREDS_PORT", INT, "443", "creds.port"),
    ("PH_CREDS_PROXY_HOST", STR, None, "creds.proxy.host"),
    ("PH_CREDS_PROXY_NOPROXYCONNECT", INT, "0", "creds.proxy.noproxyconnect"),
    ("PH_CREDS_PROXY_PORT", INT, "3218", "creds.proxy.port"),
    ("PH_CREDS_PRN", STR, None, "creds.prn"),
    ("PH_CREDS_SECRET", STR, None, "creds.secret"),
    ("PH_CREDS_TYPE", STR, "builtin", "creds.type"),
    ("PH_FACTORY_AUTOTOK", STR, None, "factory.autotok"),
    ("PH_LIBEVENT_HTTP_TIMEOUT", INT, "60", None),
    ("PH_LIBEVENT_HTTP_RETRIES", INT, "1", None),
    ("PH_METADATA_DEVMETA_INTERVAL", INT, "10", "metadata.devmeta.interval"),
    ("PH_METADATA_USRMETA_INTERVAL", INT, "5", "metadata.usrmeta.interval"),
    ("PH_ONLINE_REQUEST_THRESHOLD", INT, "0", None),
    ("PH_UPDATER_INTERVAL", INT, "5", "updater.interval"),
    ("PH_UPDATER_NETWORK_TIMEOUT", INT, "120", "updater.network_timeout"),
    ("PH_UPDATER_TRANSFER_MAX_COUNT", INT, "5", None),
    ("PV_BOOTLOADER_FITCONFIG", STR, None, "bootloader.fitconfig"),
    ("PV_BOOTLOADER_MTD_ENV", STR, None, "bootloader.mtd_env"),
    ("PV_BOOTLOADER_MTD_ONLY", BOOL, "0", "bootloader.mtd_only"),
    ("PV_BOOTLOADER_TYPE", "BOOTLOADER", "uboot", "bootloader.type"),
    ("PV_BOOTLOADER_UBOOTAB_A_NAME", STR, "fitA", None),
    ("PV_BOOTLOADER_UBOOTAB_B_NAME", STR, "fitB", None),
    ("PV_BOOTLOADER_UBOOTAB_ENV_NAME", STR, None, None),
    ("PV_BOOTLOADER_UBOOTAB_ENV_BAK_NAME", STR, None, None),
    ("PV_BOOTLOADER_UBOOTAB_ENV_OFFSET", INT, "0", None),
    ("PV_BOOTLOADER_UBOOTAB_ENV_SIZE", INT, "0", None),
    ("PV_CACHE_DEVMETADIR", STR, "{storage}/cache/devmeta", "cache.devmetadir"),
    ("PV_CACHE_USRMETADIR", STR, "{storage}/cache/meta", "cache.usrmetadir"),
    ("PV_CONTROL_REMOTE", BOOL, "1", "control.remote"),
    ("PV_CONTROL_REMOTE_ALWAYS", BOOL, "0", "control.remote.always"),
    ("PV_DEBUG_SHELL", BOOL, "1", "debug.shell"),
    ("PV_DEBUG_SHELL_AUTOLOGIN", BOOL, "0", "debug.shell.autologin"),
    ("PV_DEBUG_SHELL_TIMEOUT", INT, "60", None),
    ("PV_DEBUG_SSH", BOOL, "1", "debug.ssh"),
    ("PV_DEBUG_SSH_AUTHORIZED_KEYS", STR, None, "debug.ssh_authorized_keys"),
    ("PV_DISK_EXPORTSDIR", STR, "/exports", "disk.exportsdir"),
    ("PV_DISK_VOLDIR", STR, "/volumes", "disk.voldir"),
    ("PV_DISK_WRITABLEDIR", STR, "/writable", "disk.writabledir"),
    ("PV_DROPBEAR_CACHE_DIR", STR, "{storage}/cache/dropbear", "dropbear.cache.dir"),
    ("PV_LIBEVENT_DEBUG_MODE", BOOL, "0", None),
    ("PV_LIBTHTTP_CERTSDIR", STR, "/certs", "libthttp.certdir"),
    ("PV_LIBTHTTP_LOG_LEVEL", INT, "3", "libthttp.log.level"),
    ("PV_LOG_AUTO_DEVLOG", BOOL, "1", None),
    ("PV_LOG_CAPTURE", BOOL, "1", "log.capture"),
    ("PV_LOG_CAPTURE_DMESG", BOOL, "1", "log.capture.dmesg"),
    ("PV_LOG_BUF_NITEMS", INT, "128", "log.buf_nitems"),
    ("PV_LOG_DIR", STR, "{storage}/logs/", "log.dir"),
    ("PV_LOG_DIR_MAXSIZE", STR, "0", None),
    ("PV_LOG_FILETREE_TIMESTAMP_FORMAT", STR, None, "log.filetree.timestamp.format"),
    ("PV_LOG_HYSTERESIS_FACTOR", INT, "4", None),
    ("PV_LOG_LEVEL", INT, "0", "log.level"),
    ("PV_LOG_LOGGERS", BOOL, "1", "log.loggers"),
    ("PV_LOG_PUSH", BOOL, "1", "log.push"),
    ("PV_LOG_ROTATE_FACTOR", INT, "5", None),
    ("PV_LOG_SERVER_OUTPUTS", MASK, "filetree", "log.server.outputs"),
    ("PV_LOG_SINGLEFILE_TIMESTAMP_FORMAT", STR, None, "log.singlefile.timestamp.format"),
    ("PV_LOG_STDOUT_TIMESTAMP_FORMAT", STR, None, "log.stdout.timestamp.format"),
    ("PV_LOG_TIMESTAMP", "TIMER", "relative", None),
    ("PV_LOOP_INDEX_BASE", INT, "-1", None),
    ("PV_LXC_LOG_LEVEL", INT, "2", "lxc.log.level"),
    ("PV_NET_BRADDRESS4", STR, "10.0.3.1", "net.braddress4"),
    ("PV_NET_BRDEV", STR, "lxcbr0", "net.brdev"),
    ("PV_NET_BRMASK4", STR, "255.255.255.0", "net.brmask4"),
    ("PV_OEM_NAME", STR, None, None),
    ("PV_POLICY", STR, None, "policy"),
    ("PV_POWER_MODE", "PWR", "locks", "power.mode"),
    ("PV_POWER_DEVMETA_EAGER_PUSH", BOOL, "0", "power.devmeta.eager_push"),
    ("PV_POWER_WAKE_INTERVAL", DURATION, "3600", "power.wake.interval"),
    ("PV_POWER_WAKE_RUN_WINDOW", DURATION, "0", "power.wake.run_window"),
    ("PV_POWER_AUTOSLEEP_SETTLE", DURATION, "90", "power.autosleep.settle"),
    ("PV_POWER_WAKE_MIN_AWAKE", DURATION, "10", "power.wake.min_awake"),
    ("PV_POWER_WAKE_MAX_AWAKE", DURATION, "60", "power.wake.max_awake"),
    ("PV_POWER_DEVMETA_MAX_HELD", DURATION, "300", "power.devmeta.max_held"),
    ("PV_POWER_SYSFS_DIR", STR, "/sys/power", "power.sysfs_dir"),
    ("PV_REVISION_RETRIES", INT, "10", "revision.retries"),
    ("PV_SECUREBOOT_CHECKSUM", BOOL, "1", "secureboot.checksum"),
    ("PV_SECUREBOOT_HANDLERS", BOOL, "1", "secureboot.handlers"),
    ("PV_SECUREBOOT_MODE", "SB", "lenient", "secureboot.mode"),
    # NOTE: upstream's only alias for this entry is the misspelt compat name
    # (docs/protocol.md §12.24); clients may match it, so it stays.
    ("PV_SECUREBOOT_OEM_TRUSTSTORE", STR, "ca-oem-certificates", "PV_SECUREBOOT_OEM_TRUSTORE"),
    ("PV_SECUREBOOT_TRUSTSTORE", STR, "ca-certificates", "secureboot.truststore"),
    ("PV_STORAGE_DEVICE", STR, None, "storage.device"),
    ("PV_STORAGE_FSTYPE", STR, None, "storage.fstype"),
    ("PV_STORAGE_GC_KEEP_FACTORY", BOOL, "0", "storage.gc.keep_factory"),
    ("PV_STORAGE_GC_RESERVED", INT, "5", "storage.gc.reserved"),
    ("PV_STORAGE_GC_THRESHOLD_DEFERTIME", INT, "600", "storage.gc.threshold.defertime"),
    ("PV_STORAGE_GC_THRESHOLD", INT, "0", "storage.gc.threshold"),
    ("PV_STORAGE_LOGTEMPSIZE", STR, None, "storage.logtempsize"),
    ("PV_STORAGE_MNTPOINT", STR, "{storage}", "storage.mntpoint"),
    ("PV_STORAGE_MNTTYPE", STR, None, "storage.mnttype"),
    ("PV_STORAGE_FIRMWARE_VOL", BOOL, "0", None),
    ("PV_STORAGE_PHCONFIG_VOL", BOOL, "0", None),
    ("PV_STORAGE_WAIT", INT, "5", "storage.wait"),
    ("PV_SYSTEM_APPARMOR_PROFILES", STR, None, "system.apparmor.profiles"),
    ("PV_SYSTEM_CONFDIR", STR, "/configs", "system.confdir"),
    ("PV_SYSTEM_DRIVERS_LOAD_EARLY_AUTO", BOOL, "0", "system.drivers.load_early.auto"),
    ("PV_SYSTEM_ETCDIR", STR, "/etc", "system.etcdir"),
    ("PV_SYSTEM_ETCPANTAVISORDIR", STR, "/etc/pantavisor", None),
    ("PV_SYSTEM_INIT_MODE", "INIT", "{init_mode}", "system.init.mode"),
    ("PV_SYSTEM_LIBDIR", STR, "/lib", "system.libdir"),
    ("PV_SYSTEM_MEDIADIR", STR, "/media", "system.mediadir"),
    ("PV_SYSTEM_MOUNT_SECURITYFS", BOOL, "0", "system.mount.securityfs"),
    ("PV_SYSTEM_RUNDIR", STR, "{run}", "system.rundir"),
    ("PV_SYSTEM_DISKSDIR", STR, "/run/pantavisor/disks", "system.disksdir"),
    ("PV_SYSTEM_USRDIR", STR, "/usr", "system.usrdir"),
    ("PV_UPDATER_COMMIT_DELAY", INT, "25", "updater.commit.delay"),
    ("PV_UPDATER_GOALS_TIMEOUT", INT, "120", "updater.goals.timeout"),
    ("PV_UPDATER_USE_TMP_OBJECTS", BOOL, "0", "updater.use_tmp_objects"),
    ("PV_VOLMOUNT_DM_EXTRA_ARGS", STR, None, None),
    ("PV_WDT_MODE", "WDT", "shutdown", "wdt.mode"),
    ("PV_WDT_TIMEOUT", INT, "15", "wdt.timeout"),
    ("PV_XCONNECT_DBUS_SYSTEMBUS_ENABLED", BOOL, "1", "xconnect.dbus.systembus.enabled"),
)


@dataclass(frozen=True)
class Entry:
    """One configuration entry."""

    key: str
    type: str
    default: Any  # internal form
    alias: Optional[str]
    runtime: bool
    secret: bool

    def allows(self, level: str) -> bool:
        return level in RANK and (level not in RUNTIME_LEVELS or self.runtime)


def build_entries(substitutions: Dict[str, str]) -> Sequence[Entry]:
    """The table with device-specific defaults filled in.

    :param substitutions: ``storage``, ``run`` and ``init_mode`` for the
        ``{...}`` placeholders (the demo device's paths and init mode).
    :raises ValueError: a substituted default does not parse (e.g. a bad init mode).
    """
    entries = []
    for key, type_, default, alias in _TABLE:
        text = default.format(**substitutions) if default is not None else None
        entries.append(Entry(key, type_, parse(type_, text), alias, key in RUNTIME, key in SECRETS))
    return entries
