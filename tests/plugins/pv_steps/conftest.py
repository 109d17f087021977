"""Fixtures for the steps plugin: cores over a scratch storage dir, one demo gunicorn per module."""
import os
import sys

import pytest

import pv_steps

# The builders of state JSON from run.json dicts (run_json, state_of) live with the engine's fakes.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pv_containers"))


@pytest.fixture
def steps_core(make_core):
    def build(*extra_plugins, **overrides):
        return make_core(plugins=[pv_steps, *extra_plugins], overrides=overrides)

    return build


@pytest.fixture(scope="module")
def demo_server(demo_device):
    return demo_device
