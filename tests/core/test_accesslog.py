"""The access line's level: routine reads stay out of an info-level log."""
import logging

import pytest

from pvcore.accesslog import access_level


@pytest.mark.parametrize("method, status, level", [
    ("GET", 200, logging.DEBUG),
    ("HEAD", 200, logging.DEBUG),
    ("GET", 404, logging.DEBUG),
    ("PUT", 200, logging.INFO),
    ("POST", 403, logging.INFO),
    ("DELETE", 400, logging.INFO),
    ("GET", 500, logging.WARNING),
    ("PUT", 507, logging.WARNING),
])
def test_level_says_what_happened(method, status, level):
    assert access_level(method, status) == level
