"""pvcontrol as a subprocess: the requests each command makes and how the
answers become output and exit codes."""

from __future__ import annotations

import json
import os
import socket

import pytest

J = "application/json"

# (argv, method, path, body) — every command of docs/protocol.md §10 and the brief.
REQUESTS = [
    (["ls"], "GET", "/containers", b""),
    (["list"], "GET", "/containers", b""),
    (["containers", "ls"], "GET", "/containers", b""),
    (["container", "list"], "GET", "/containers", b""),
    (["containers", "start", "app"], "PUT", "/containers/app", b'{"action":"start"}'),
    (["container", "stop", "pv-example-unix-client"], "PUT", "/containers/pv-example-unix-client",
     b'{"action":"stop"}'),
    (["container", "restart", "my app"], "PUT", "/containers/my%20app", b'{"action":"restart"}'),
    (["groups", "ls"], "GET", "/groups", b""),
    (["signal", "ready"], "POST", "/signal", b'{"type":"ready","payload":""}'),
    (["signal", "alive"], "POST", "/signal", b'{"type":"alive","payload":""}'),
    (["cmd", "run", "locals/x"], "POST", "/commands", b'{"op":"LOCAL_RUN","payload":"locals/x"}'),
    (["command", "run-commit", "5"], "POST", "/commands", b'{"op":"LOCAL_RUN_COMMIT","payload":"5"}'),
    (["commands", "try-once", "locals/t"], "POST", "/commands", b'{"op":"TRY_ONCE","payload":"locals/t"}'),
    (["cmd", "apply", "locals/a"], "POST", "/commands", b'{"op":"LOCAL_APPLY","payload":"locals/a"}'),
    (["cmd", "reboot"], "POST", "/commands", b'{"op":"REBOOT_DEVICE","payload":""}'),
    (["-m", "ignored", "cmd", "reboot", "bye"], "POST", "/commands", b'{"op":"REBOOT_DEVICE","payload":"bye"}'),
    (["cmd", "poweroff", "test shutdown"], "POST", "/commands",
     b'{"op":"POWEROFF_DEVICE","payload":"test shutdown"}'),
    (["cmd", "poweroff", 'say "hi"\\now'], "POST", "/commands",
     b'{"op":"POWEROFF_DEVICE","payload":"say \\"hi\\"\\\\now"}'),
    (["cmd", "make-factory"], "POST", "/commands", b'{"op":"MAKE_FACTORY","payload":""}'),
    (["cmd", "make-factory", "3"], "POST", "/commands", b'{"op":"MAKE_FACTORY","payload":"3"}'),
    (["cmd", "run-gc"], "POST", "/commands", b'{"op":"RUN_GC","payload":""}'),
    (["cmd", "enable-ssh"], "POST", "/commands", b'{"op":"ENABLE_SSH","payload":""}'),
    (["cmd", "disable-ssh"], "POST", "/commands", b'{"op":"DISABLE_SSH","payload":""}'),
    (["cmd", "go-remote"], "POST", "/commands", b'{"op":"GO_REMOTE","payload":""}'),
    (["cmd", "unclaim"], "POST", "/commands", b'{"op":"UNCLAIM","payload":""}'),
    (["cmd", "defer-reboot", "600"], "POST", "/commands", b'{"op":"DEFER_REBOOT","payload":"600"}'),
    (["cmd", "xconnect-graph"], "POST", "/commands", b'{"op":"XCONNECT_GRAPH","payload":""}'),
    (["cmd", "update-metadata", '{"k": "v"}'], "POST", "/commands",
     b'{"op":"UPDATE_METADATA","payload":{"k":"v"}}'),
    (["usrmeta", "ls"], "GET", "/user-meta", b""),
    (["usrmeta", "list"], "GET", "/user-meta", b""),
    (["usrmeta", "save", "my-key", "my-value"], "PUT", "/user-meta/my-key", b"my-value"),
    (["usrmeta", "save", "my-key"], "PUT", "/user-meta/my-key", b""),
    (["usrmeta", "save", "a key", '{"x":1}'], "PUT", "/user-meta/a%20key", b'{"x":1}'),
    (["usrmeta", "delete", "my-key"], "DELETE", "/user-meta/my-key", b""),
    (["devmeta", "ls"], "GET", "/device-meta", b""),
    (["devmeta", "save", "test-key", "test-value-123"], "PUT", "/device-meta/test-key", b"test-value-123"),
    (["devmeta", "upload", "k", "v"], "PUT", "/device-meta/k", b"v"),
    (["devmeta", "delete", "test-key"], "DELETE", "/device-meta/test-key", b""),
    (["buildinfo"], "GET", "/buildinfo", b""),
    (["settings"], "GET", "/_pvcore/settings", b""),
    (["storage", "gc"], "POST", "/storage/gc", b""),
    (["objects", "ls"], "GET", "/objects", b""),
    (["objects", "list"], "GET", "/objects", b""),
    (["steps", "ls"], "GET", "/steps", b""),
    (["steps", "get", "current"], "GET", "/steps/current", b""),
    (["steps", "get", "locals/a b"], "GET", "/steps/locals/a%20b", b""),
    (["steps", "show-progress", "0"], "GET", "/steps/0/progress", b""),
    (["steps", "show-progress", "locals/x"], "GET", "/steps/locals/x/progress", b""),
    (["config", "ls"], "GET", "/config", b""),
    (["conf", "ls"], "GET", "/config2", b""),
    (["configuration", "list"], "GET", "/config2", b""),
    (["graph", "ls"], "GET", "/xconnect-graph", b""),
    (["daemons", "ls"], "GET", "/daemons", b""),
    (["daemons", "start", "pv-xconnect"], "PUT", "/daemons/pv-xconnect", b'{"action":"start"}'),
    (["daemons", "stop", "pv-xconnect"], "PUT", "/daemons/pv-xconnect", b'{"action":"stop"}'),
    (["drivers", "ls"], "GET", "/drivers", b""),
    (["drivers", "load"], "PUT", "/drivers/load", b""),
    (["drivers", "load", "wifi"], "PUT", "/drivers/wifi/load", b""),
    (["drivers", "unload"], "PUT", "/drivers/unload", b""),
    (["drivers", "unload", "wifi"], "PUT", "/drivers/wifi/unload", b""),
]


@pytest.mark.parametrize("argv, method, path, body", REQUESTS, ids=[" ".join(r[0]) for r in REQUESTS])
def test_command_makes_exact_request(pv, cli, argv, method, path, body):
    pv.reply(method, path, body=b'{"ok":"yes"}')
    res = cli(*argv)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b'{"ok":"yes"}\n'
    assert res.stderr == b""
    assert len(pv.requests) == 1
    req = pv.requests[0]
    assert (req.method, req.path, req.body) == (method, path, body)
    assert req.header("Content-Type") == J
    assert req.header("Host") == "localhost"
    assert req.header("Content-Length") == str(len(body))


def test_update_metadata_rejects_non_object(pv, cli):
    res = cli("cmd", "update-metadata", "not json")
    assert res.returncode == 1
    assert b"Usage: pvcontrol cmd" in res.stderr
    assert pv.requests == []


ERRORS = [
    (400, b'{"Error":"Method not supported for this endpoint"}', 255),
    (403, b'{"Error":"Container has restart_policy \'system\' and cannot be controlled via API"}', 255),
    (404, b'{"Error":"Daemon not found"}', 255),
    (409, b'{"Error":"Cannot do this operation while on local mode"}', 255),
    (422, b'{"Error":"Object has bad checksum"}', 60),
    (422, b'{"Error":"Parser: State JSON has bad format"}', 255),
    (500, b'{"Error":"State verification has failed"}', 70),
    (500, b'{"Error":"Signal not expected from this platform"}', 255),
    (503, b'{"Error":"A command is already in progress. Try again"}', 75),
    (507, b'{"Error":"Not enough disk space available"}', 48),
    (413, b'{"Error":"Not enough disk space available"}', 48),
]


@pytest.mark.parametrize("status, body, code", ERRORS)
def test_error_status_goes_to_stderr_with_exit_code(pv, cli, status, body, code):
    pv.reply("POST", "/commands", status=status, body=body)
    res = cli("cmd", "run-gc")
    assert res.returncode == code
    assert res.stdout == b""
    assert res.stderr == body + b"\n"


def test_204_exits_255_with_empty_stderr_line(pv, cli):
    pv.reply("POST", "/commands", status=204)
    res = cli("cmd", "go-remote")
    assert res.returncode == 255
    assert res.stdout == b""
    assert res.stderr == b"\n"


def test_empty_200_body_prints_empty_line(pv, cli):
    pv.reply("PUT", "/user-meta/k", body=b"")
    res = cli("usrmeta", "save", "k", "v")
    assert (res.returncode, res.stdout, res.stderr) == (0, b"\n", b"")


def test_body_printed_exactly_without_pretty(pv, cli):
    body = b'[{"name":"app","status":"READY"}, {"name":"b"}]'
    pv.reply("GET", "/containers", body=body)
    res = cli("ls")
    assert res.stdout == body + b"\n"


def test_pretty_prints_json(pv, run_raw):
    pv.reply("GET", "/containers", body=b'[{"name":"app","roles":[]}]')
    res = run_raw(["--pretty", "-s", pv.path, "containers", "ls"])
    assert res.returncode == 0
    assert res.stdout == json.dumps([{"name": "app", "roles": []}], indent=2).encode() + b"\n"


def test_pretty_leaves_text_alone(pv, cli):
    pv.reply("GET", "/buildinfo", body=b"manifest: x", content_type="text/plain")
    res = cli("--pretty", "buildinfo")
    assert res.stdout == b"manifest: x\n"


def test_output_file_option(pv, cli, tmp_path):
    pv.reply("GET", "/steps/current", body=b'{"#spec":"pantavisor-service-system@1"}')
    target = tmp_path / "state.json"
    res = cli("-f", str(target), "steps", "get", "current")
    assert res.returncode == 0
    assert res.stdout == b""
    assert target.read_bytes() == b'{"#spec":"pantavisor-service-system@1"}\n'


def test_output_file_error_goes_to_stderr(pv, cli, tmp_path):
    pv.reply("GET", "/steps/9", status=404, body=b'{"Error":"Resource does not exist"}')
    target = tmp_path / "state.json"
    res = cli("-f", str(target), "steps", "get", "9")
    assert res.returncode == 255
    assert res.stderr == b'{"Error":"Resource does not exist"}\n'
    assert target.read_bytes() == b""


def test_verbose_traces_on_stderr(pv, cli):
    pv.reply("GET", "/groups", body=b"[]")
    res = cli("-v", "groups", "ls")
    assert res.returncode == 0
    assert res.stdout == b"[]\n"
    assert b"> GET /groups\n" in res.stderr
    assert b"< 200 " in res.stderr


def test_daemon_restart_is_stop_then_start(pv, cli):
    pv.reply("PUT", "/daemons/pv-xconnect", body=b"")
    res = cli("daemons", "restart", "pv-xconnect")
    assert res.returncode == 0
    assert [(r.method, r.path, r.body) for r in pv.requests] == [
        ("PUT", "/daemons/pv-xconnect", b'{"action":"stop"}'),
        ("PUT", "/daemons/pv-xconnect", b'{"action":"start"}'),
    ]
    # One invocation, one keep-alive connection.
    assert {r.connection for r in pv.requests} == {1}


def test_daemon_restart_stops_on_failed_stop(pv, cli):
    pv.reply("PUT", "/daemons/nope", status=404, body=b'{"Error":"Daemon not found"}')
    res = cli("daemons", "restart", "nope")
    assert res.returncode == 255
    assert res.stderr == b'{"Error":"Daemon not found"}\n'
    assert len(pv.requests) == 1


def test_daemon_restart_reports_start_answer(pv, cli):
    pv.reply("PUT", "/daemons/d", pv.Reply(200, b""), pv.Reply(507, b'{"Error":"Not enough disk space available"}'))
    res = cli("daemons", "restart", "d")
    assert res.returncode == 48
    assert len(pv.requests) == 2


def test_steps_put_with_message(pv, cli, tmp_path):
    state = tmp_path / "state.json"
    state.write_bytes(b'{"#spec":"pantavisor-service-system@1"}')
    pv.reply("PUT", "/steps/locals/test-put-rev", body=b"")
    pv.reply("PUT", "/steps/locals/test-put-rev/commitmsg", body=b"")
    res = cli("-m", "test put", "steps", "put", str(state), "locals/test-put-rev")
    assert res.returncode == 0, res.stderr
    assert [(r.method, r.path, r.body) for r in pv.requests] == [
        ("PUT", "/steps/locals/test-put-rev", b'{"#spec":"pantavisor-service-system@1"}'),
        ("PUT", "/steps/locals/test-put-rev/commitmsg", b"test put"),
    ]
    assert pv.requests[0].header("Content-Type") == J
    assert pv.requests[0].header("Content-Length") == str(state.stat().st_size)


def test_steps_put_reports_commitmsg_answer(pv, cli, tmp_path):
    state = tmp_path / "s.json"
    state.write_bytes(b"{}")
    pv.reply("PUT", "/steps/locals/r", body=b"")
    pv.reply("PUT", "/steps/locals/r/commitmsg", status=507, body=b'{"Error":"Not enough disk space available"}')
    res = cli("-m", "m" * 300, "steps", "put", str(state), "locals/r")
    assert res.returncode == 48
    assert res.stderr == b'{"Error":"Not enough disk space available"}\n'


def test_steps_put_failure_skips_commitmsg(pv, cli, tmp_path):
    state = tmp_path / "s.json"
    state.write_bytes(b"not json")
    pv.reply("PUT", "/steps/locals/r", status=422, body=b'{"Error":"Parser: State JSON has bad format"}')
    res = cli("-m", "msg", "steps", "put", str(state), "locals/r")
    assert res.returncode == 255
    assert [r.path for r in pv.requests] == ["/steps/locals/r"]


def test_steps_put_from_stdin_without_message(pv, cli):
    pv.reply("PUT", "/steps/locals/r", body=b"")
    res = cli("steps", "put", "-", "locals/r", stdin=b'{"a":1}')
    assert res.returncode == 0
    assert [(r.path, r.body) for r in pv.requests] == [("/steps/locals/r", b'{"a":1}')]


@pytest.mark.parametrize("argv", [
    ["bogus"], [], ["containers"], ["containers", "frobnicate"], ["containers", "start"],
    ["ls", "extra"], ["buildinfo", "x"], ["cmd"], ["cmd", "run"], ["cmd", "defer-reboot"],
    ["objects", "put", "file"], ["objects", "get"], ["steps", "put", "x"], ["steps", "install"],
    ["usrmeta", "save"], ["devmeta", "delete", ""], ["signal", "sleepy"], ["drivers", "x"],
    ["storage"], ["graph", "x"], ["daemons", "restart"],
])
def test_usage_errors_exit_1_before_socket_check(run_raw, argv, tmp_path):
    res = run_raw(["-s", str(tmp_path / "missing"), *argv])
    assert res.returncode == 1
    assert b"Usage: pvcontrol" in res.stderr
    assert b"not found" not in res.stdout


@pytest.mark.parametrize("argv, heading", [
    (["--help"], b"Usage: pvcontrol [options]"),
    (["-h"], b"Usage: pvcontrol [options]"),
    (["ls", "--help"], b"Usage: pvcontrol ls"),
    (["container", "--help"], b"Usage: pvcontrol containers"),
    (["cmd", "--help"], b"Usage: pvcontrol cmd"),
    (["steps", "--help"], b"Usage: pvcontrol steps"),
    (["daemons", "--help"], b"Usage: pvcontrol daemons"),
    (["drivers", "--help"], b"Usage: pvcontrol drivers"),
    (["conf", "--help"], b"Usage: pvcontrol <conf|configuration>"),
])
def test_help_exits_0_on_stdout(run_raw, argv, heading, tmp_path):
    res = run_raw(["-s", str(tmp_path / "missing"), *argv])
    assert res.returncode == 0
    assert res.stdout.startswith(heading)
    assert res.stderr == b""


def test_missing_socket(run_raw, tmp_path):
    path = tmp_path / "nope"
    res = run_raw(["-s", str(path), "ls"])
    assert res.returncode == 1
    assert res.stdout == f"ERROR: {path} not found\n".encode()


def test_regular_file_is_not_a_socket(run_raw, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    res = run_raw(["--socket", str(path), "ls"])
    assert (res.returncode, res.stdout) == (1, f"ERROR: {path} not found\n".encode())


def test_dropped_connection_is_no_response(pv, cli):
    pv.reply("GET", "/containers", pv.Reply(drop=True))
    res = cli("ls")
    assert res.returncode == 1
    assert res.stderr == b"ERROR: got no response\n"
    assert res.stdout == b""


def test_socket_without_listener_is_no_response(run_raw, short_tmp):
    path = str(short_tmp / "dead")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()  # the socket file stays, nobody accepts
    res = run_raw(["-s", path, "groups", "ls"])
    assert res.returncode == 1
    assert res.stderr == b"ERROR: got no response\n"


def test_socket_from_environment(run_raw, pv):
    pv.reply("GET", "/daemons", body=b"[]")
    res = run_raw(["daemons", "ls"], env={"PVCONTROL_SOCKET": pv.path})
    assert (res.returncode, res.stdout) == (0, b"[]\n")


def test_socket_from_checkout_directory(run_raw, make_pv, short_tmp):
    (short_tmp / "setup.cfg").write_text("[metadata]\n")
    (short_tmp / "var" / "run").mkdir(parents=True)
    fake = make_pv(short_tmp / "var" / "run" / "pv-ctrl")
    fake.reply("GET", "/groups", body=b'[{"name":"app"}]')
    sub = short_tmp / "plugins" / "deep"
    sub.mkdir(parents=True)
    res = run_raw(["groups", "ls"], cwd=str(sub))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == b'[{"name":"app"}]\n'


def test_entry_point_main_returns_code(pv, capfd):
    from pvcontrol import main

    pv.reply("GET", "/buildinfo", body=b"bi")
    assert main(["-s", pv.path, "buildinfo"]) == 0
    assert capfd.readouterr().out == "bi\n"
    assert main(["-s", pv.path, "nonsense"]) == 1
    assert os.path.exists(pv.path)


def test_option_without_value_is_usage_error(run_raw):
    res = run_raw(["-s"])
    assert res.returncode == 1
    assert b"option -s needs a value" in res.stderr
    assert res.stdout == b""


def test_options_after_command_are_arguments(pv, cli):
    # Options only count before the command, as in upstream's grammar.
    pv.reply("PUT", "/user-meta/-v", body=b"")
    res = cli("usrmeta", "save", "-v", "--pretty")
    assert res.returncode == 0
    assert [(r.path, r.body) for r in pv.requests] == [("/user-meta/-v", b"--pretty")]
