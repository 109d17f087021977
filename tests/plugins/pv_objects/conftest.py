"""Fixtures for the objects plugin: a core with a fake "what is referenced" plugin,
and one demo gunicorn shared by a module's black-box tests."""

import pytest

import pv_objects
from pvcore import hookimpl


class FakeReferences:
    """Stands in for the owner of revisions: serves ``POST /storage/gc``
    collecting everything but ``self.shas`` through ``pv_objects_collect``."""

    def __init__(self):
        self.shas = set()

    @hookimpl
    def pvcore_routes(self, core):
        refs = self

        class GarbageCollect:
            def on_post(self, req, resp):
                reclaimed = core.hook.pv_objects_collect(core=core, keep=set(refs.shas))
                resp.data = b'{"reclaimed": %d}' % reclaimed

        return [("/storage/gc", GarbageCollect())]


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
