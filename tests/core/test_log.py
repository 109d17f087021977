"""Request fields on every event logged while a request is served."""
import threading

from pvcore.log import add_request_fields, bind_request, unbind_request


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
