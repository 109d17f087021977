"""Fixtures for the steps plugin: cores over a scratch storage dir, one demo gunicorn per module."""

import pytest

import pv_steps


@pytest.fixture
def steps_core(make_core):
    def build(*extra_plugins, **overrides):
        return make_core(plugins=[pv_steps, *extra_plugins], overrides=overrides)

    return build


@pytest.fixture(scope="module")
def demo_server(demo_device):
    return demo_device
