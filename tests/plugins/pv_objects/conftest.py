"""Fixtures for the objects plugin: a core with a fake "what is referenced" plugin,
and one demo gunicorn shared by a module's black-box tests."""

import pytest

import pv_objects
from pvcore import hookimpl


class FakeReferences:
    """Stands in for pv_steps: answers ``pvcore_objects_in_use`` with ``self.shas``."""

    def __init__(self):
        self.shas = set()

    @hookimpl
    def pvcore_objects_in_use(self, core):
        return sorted(self.shas)


@pytest.fixture
def refs():
    return FakeReferences()


@pytest.fixture
def objects_core(make_core, refs):
    def build(**overrides):
        overrides.setdefault("storage_reserved_percent", 0)
        return make_core(plugins=[pv_objects, refs], overrides=overrides)

    return build


@pytest.fixture(scope="module")
def demo_server(demo_device):
    return demo_device
