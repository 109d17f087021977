"""pvcore/ownlisteners.py: the loop's queue of calls, safe from signal handlers and after the loop."""
from pvcore.ownlisteners import GuardedMethodQueue
from pvcore.testing import returns_within


def test_the_loop_queue_refuses_calls_once_closed():
    queue = GuardedMethodQueue()
    queue.init()
    assert queue.defer(lambda: None) is True
    queue.close()
    assert queue.defer(lambda: None) is False


def test_the_loop_queue_takes_a_call_from_a_signal_handler_inside_defer():
    # gthread's SIGTERM handler defers a wake-up; the main thread may be inside defer()
    queue = GuardedMethodQueue()
    queue.init()

    def nested():
        with queue._guard:  # as defer() holds it
            assert queue.defer(lambda: None)

    assert returns_within(nested)
    queue.close()

