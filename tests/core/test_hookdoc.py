import os

from pvcore import hookspecs
from pvcore_dev import hookdoc

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "plugins.md")


def test_committed_hook_reference_is_current():
    with open(DOC) as fh:
        text = fh.read()
    assert hookdoc.update(text) == text, "run: python -m pvcore_dev.hookdoc docs/plugins.md"


def test_reference_covers_every_hook():
    rendered = hookdoc.render()
    for name in dir(hookspecs):
        if name.startswith("pvcore_"):
            assert f"#### `{name}(" in rendered
