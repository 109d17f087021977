"""Fixtures for the steps plugin: cores over a scratch storage dir, one demo gunicorn per module."""
import shutil

import pytest

import pv_steps
from pvcore.testing import GunicornServer, short_tempdir


@pytest.fixture
def steps_core(make_core):
    def build(*extra_plugins, **overrides):
        return make_core(plugins=[pv_steps, *extra_plugins], overrides=overrides)

    return build


@pytest.fixture(scope="module")
def demo_server():
    server = GunicornServer(short_tempdir(), {"PVCORE_DEMO": "1"})
    server.start()
    yield server
    try:
        server.stop()
        # Bad input must never become a 500.
        assert [e for e in server.log_events() if e.get("event") == "unhandled_error"] == []
    finally:
        shutil.rmtree(server.base, ignore_errors=True)
