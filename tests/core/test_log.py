"""Request fields on every event logged while a request is served; syslog
priorities when stderr is the journal."""
import json
import logging
import os
import threading

import pytest

from pvcore.log import StderrHandler, add_request_fields, bind_request, journal_stream, unbind_request


def test_events_carry_the_fields_of_the_request_being_served():
    fields = {"request_id": "r1", "method": "GET", "path": "/containers"}
    bind_request(fields)
    try:
        fields["caller"] = "app"  # identified after binding: still shows up
        event = add_request_fields(None, "info", {"event": "x", "path": "/own"})
        assert event == {"event": "x", "path": "/own", "request_id": "r1", "method": "GET", "caller": "app"}
    finally:
        unbind_request()
    assert add_request_fields(None, "info", {"event": "y"}) == {"event": "y"}


def test_each_thread_has_its_own_request():
    bind_request({"request_id": "main"})
    seen = []
    try:
        thread = threading.Thread(target=lambda: seen.append(add_request_fields(None, "info", {})))
        thread.start()
        thread.join()
    finally:
        unbind_request()
    assert seen == [{}]


def _journal_env(path):
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def test_lines_to_the_journal_carry_their_syslog_priority(tmp_path):
    path = tmp_path / "journal"
    with open(path, "w") as stream:
        os.environ["JOURNAL_STREAM"] = _journal_env(path)
        try:
            handler = StderrHandler(stream)
        finally:
            del os.environ["JOURNAL_STREAM"]
        handler.setFormatter(logging.Formatter('{"event": "%(message)s"}'))
        logger = logging.getLogger("pvcore.test.journal")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        try:
            for level in ("debug", "info", "warning", "error", "critical"):
                getattr(logger, level)(level)
        finally:
            logger.removeHandler(handler)
    lines = path.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    # journalctl -p err: priorities 0..3. The JSON after the prefix is intact.
    assert [json.loads(line[3:])["event"] for line in lines if int(line[1]) <= 3] == ["error", "critical"]


def test_other_streams_get_plain_lines(tmp_path):
    elsewhere, journal = tmp_path / "file", tmp_path / "journal"
    journal.write_text("")
    # A child that inherited JOURNAL_STREAM but writes elsewhere: no prefix.
    with open(elsewhere, "w") as stream:
        assert journal_stream(stream, {"JOURNAL_STREAM": _journal_env(journal)}) is False
        assert journal_stream(stream, {"JOURNAL_STREAM": _journal_env(elsewhere)}) is True
        assert journal_stream(stream, {"JOURNAL_STREAM": "garbage"}) is False
        assert journal_stream(stream, {}) is False


@pytest.mark.gunicorn
def test_a_server_under_journald_prefixes_every_line(start_gunicorn, tmp_path):
    base = tmp_path / "srv"
    base.mkdir()
    log_path = base / "gunicorn.log"
    log_path.write_text("")
    server = start_gunicorn(env={"JOURNAL_STREAM": _journal_env(log_path)}, base=str(base))
    server.request("GET", "/nope")
    server.stop()
    lines = [line for line in server.log_text().splitlines() if line]
    assert lines
    for line in lines:
        assert line[0] == "<" and line[2] == ">", line
        event = json.loads(line[3:])
        assert int(line[1]) == {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}[event["level"]]
