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


def test_a_caller_other_than_the_host_gets_a_budget_of_lines_and_hears_what_was_held_back(monkeypatch):
    from pvcore import accesslog

    clock = [100.0]
    monkeypatch.setattr(accesslog.time, "monotonic", lambda: clock[0])
    budget = accesslog.LineBudget(per_second=3)
    assert [budget.take("app") for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    assert budget.take("other") == (True, 0)  # a budget each
    clock[0] += 1.0
    assert budget.take("app") == (True, 2)  # the next second: said once
    assert budget.take("app") == (True, 0)


@pytest.mark.gunicorn
def test_the_hosts_access_lines_are_never_held_back(start_gunicorn):
    from pvcore.testing import raw_request
    server = start_gunicorn(demo=True)
    # the host is never held back
    for _ in range(40):
        raw_request(server.socket, b"PUT /user-meta/k HTTP/1.0\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nv")
    text = server.log_text()
    lines = [line for line in text.splitlines() if '"http_request"' in line and '"path": "/user-meta/k"' in line]
    assert len(lines) == 40
    assert "access_lines_suppressed" not in text
