"""A container's exit status is its init's, not lxc-start's."""
from pv_lxc.lxclog import container_exit_status


def test_the_inits_status_comes_from_lxcs_log(tmp_path):
    log = tmp_path / "lxc.log"
    log.write_text("lxc-start c 20261206 INFO     start - start.c:lxc_spawn - Container \"c\" started\n"
                   "lxc-start c 20261206 INFO     error - error.c:lxc_error_set_and_log:31 - "
                   "Child <8079> ended on error (3)\n")
    assert container_exit_status(str(log), 0) == 3
    log.write_text("lxc-start c INFO error - Child <81> ended on signal Killed(9)\n")
    assert container_exit_status(str(log), 9) == 128 + 9


def test_without_that_line_lxc_starts_status_stands(tmp_path):
    log = tmp_path / "lxc.log"
    log.write_text("lxc-start c ERROR start - Failed to spawn container\n")
    assert container_exit_status(str(log), 1) == 1
    assert container_exit_status(str(tmp_path / "missing"), 255) == 255
