"""Parsing and rendering of configuration value types."""
import pytest

from pv_config.table import RUNTIME, SECRETS, build_entries
from pv_config.values import as_json, as_python, as_text, parse


@pytest.mark.parametrize("text,expected", [("true", True), ("YES", True), ("on", True), ("1", True), ("7", True),
                                           ("false", False), ("No", False), ("off", False), ("0", False),
                                           (True, True), (0, False)])
def test_bool(text, expected):
    assert parse("BOOL", text) is expected


@pytest.mark.parametrize("text", ["maybe", "", "1x"])
def test_bad_bool(text):
    with pytest.raises(ValueError):
        parse("BOOL", text)


@pytest.mark.parametrize("text,expected", [("42", 42), ("-1", -1), (" 5", 5), (9, 9)])
def test_int(text, expected):
    assert parse("INT", text) == expected


@pytest.mark.parametrize("text", ["1_000", "4 ", "x", "", "1.5", True])
def test_bad_int(text):
    with pytest.raises(ValueError):
        parse("INT", text)


@pytest.mark.parametrize("text,expected", [("30", 30), ("30s", 30), ("10min", 600), ("1h", 3600), ("2d", 172800)])
def test_duration(text, expected):
    assert parse("DURATION", text) == expected


@pytest.mark.parametrize("text,expected", [("appengine", 2), ("Standalone", 1), ("0", 0), (1, 1)])
def test_enum(text, expected):
    assert parse("INIT", text) == expected


@pytest.mark.parametrize("text", ["bogus", "3", 7])
def test_bad_enum(text):
    with pytest.raises(ValueError):
        parse("INIT", text)


@pytest.mark.parametrize("text,expected", [("filetree", 132), ("singlefile,stdout", 138), ("132", 132), ("4", 132)])
def test_log_server_outputs_mask(text, expected):
    assert parse("MASK", text) == expected


def test_renderings():
    assert (as_json("BOOL", True), as_text("BOOL", True), as_text("BOOL", False)) == (True, "1", "0")
    assert (as_json("INIT", 2), as_text("INIT", 2), as_python("INIT", 2)) == (2, "appengine", "appengine")
    assert (as_json("STR", None), as_text("STR", None), as_text("STR", "x")) == (None, "(null)", "x")
    assert (as_json("MASK", 132), as_text("MASK", 132)) == (132, "132")
    assert as_text("WDT", 1) == "shutdown"


def test_table_defaults_follow_the_device():
    entries = {e.key: e for e in build_entries({"storage": "/s", "run": "/r", "init_mode": "appengine"})}
    assert entries["PV_SYSTEM_INIT_MODE"].default == 2
    assert entries["PV_STORAGE_MNTPOINT"].default == "/s"
    assert entries["PV_SYSTEM_RUNDIR"].default == "/r"
    assert entries["PV_CACHE_USRMETADIR"].default == "/s/cache/meta"
    assert entries["PV_LOG_SERVER_OUTPUTS"].default == 132
    assert entries["PV_SECUREBOOT_MODE"].default == 2
    assert entries["PH_CREDS_ID"].default is None
    assert len(entries) == 113  # docs/protocol.md §7.12
    assert RUNTIME <= set(entries) and SECRETS <= set(entries)
    assert entries["PV_LOG_LEVEL"].allows("metadata") and not entries["PV_SYSTEM_INIT_MODE"].allows("metadata")
