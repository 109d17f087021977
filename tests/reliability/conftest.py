"""Quick (``make test``) and long (``make test-long``, ``PVCORE_TEST_LONG=1``) forms of the reliability suite."""

import pytest

from reliability_helpers import LONG


@pytest.fixture(name="long_mode", scope="session")
def _long_mode():
    """``True`` under ``PVCORE_TEST_LONG=1``: more seeds, more examples, longer load."""
    return LONG
