"""Respawn backoff and the daemon table without HTTP."""
from pv_daemons.supervision import Backoff, binary_exists


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run():
    backoff = Backoff(initial=0.5, maximum=10.0, reset_after=30.0)
    assert [backoff.after_exit(1.0) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.after_exit(30.0) == 0.5
    assert backoff.after_exit(0.1) == 1.0
    backoff.reset()
    assert backoff.after_exit(0.1) == 0.5


def test_binary_exists():
    assert binary_exists("sh")
    assert not binary_exists("/nonexistent/daemon")
    assert not binary_exists("no-such-binary-pvcore")
