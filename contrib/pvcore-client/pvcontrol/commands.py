"""Command groups of pvcontrol: argument parsing and the requests they make.

Each ``parse_<group>(args)`` turns the words after the group name into an
:class:`Action` or raises :class:`UsageError`. Parsing never touches the
socket, so usage errors are reported before the socket is checked, as
upstream does.
"""

from __future__ import annotations

from pvcontrol.context import (
    Action,
    Context,
    HelpRequested,
    UsageError,
    arg_bytes,
    json_body,
    url_part,
)

# PERF: typing only for type checkers; the modules of the heavier commands
# (install, transfer, follow) are imported by the commands that run them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional

    Parser = Callable[[List[str]], Action]


def _transfer():
    from pvcontrol import transfer

    return transfer


def _install():
    from pvcontrol import install

    return install


def _arg(args: List[str], index: int) -> str:
    """Positional argument *index*, or "" when absent (like sh's "$n")."""
    return args[index] if len(args) > index else ""


def _required(group: str, args: List[str], index: int) -> str:
    value = _arg(args, index)
    if not value:
        raise UsageError(group)
    return value


def _simple(method: str, path: str, body: Optional[bytes] = None) -> Action:
    """An action making one request and reporting its response."""
    return Action(lambda ctx: ctx.report(ctx.request(method, path, body)))


def _help_or(group: str, args: List[str]) -> str:
    """The subcommand word; ``--help`` short-circuits to usage with exit 0."""
    sub = _arg(args, 0)
    if sub == "--help":
        raise HelpRequested(group)
    return sub


def _listing(group: str, path: str) -> Parser:
    """Parser of groups whose only subcommand is ``ls``/``list``."""

    def parse(args: List[str]) -> Action:
        if _help_or(group, args) in ("ls", "list"):
            return _simple("GET", path)
        raise UsageError(group)

    return parse


def _no_arguments(group: str, path: str) -> Parser:
    """Parser of commands that take no argument at all (ls, buildinfo)."""

    def parse(args: List[str]) -> Action:
        if _help_or(group, args) or len(args) > 1:
            raise UsageError(group)
        return _simple("GET", path)

    return parse


def parse_containers(args: List[str]) -> Action:
    sub = _help_or("containers", args)
    if sub in ("ls", "list"):
        return _simple("GET", "/containers")
    if sub in ("start", "stop", "restart"):
        name = _required("containers", args, 1)
        return _simple("PUT", f"/containers/{url_part(name)}", json_body({"action": sub}))
    raise UsageError("containers")


def parse_signal(args: List[str]) -> Action:
    sub = _help_or("signal", args)
    if sub in ("ready", "alive"):
        return _simple("POST", "/signal", json_body({"type": sub, "payload": ""}))
    raise UsageError("signal")


# subcommand -> (op, argument: "required" | "optional" | None)
_COMMANDS = {
    "run": ("LOCAL_RUN", "required"),
    "run-commit": ("LOCAL_RUN_COMMIT", "required"),
    "try-once": ("TRY_ONCE", "required"),
    "apply": ("LOCAL_APPLY", "required"),
    "reboot": ("REBOOT_DEVICE", "optional"),
    "poweroff": ("POWEROFF_DEVICE", "optional"),
    "make-factory": ("MAKE_FACTORY", "optional"),
    "run-gc": ("RUN_GC", None),
    "enable-ssh": ("ENABLE_SSH", None),
    "disable-ssh": ("DISABLE_SSH", None),
    "go-remote": ("GO_REMOTE", None),
    "unclaim": ("UNCLAIM", None),
    "defer-reboot": ("DEFER_REBOOT", "required"),
    "xconnect-graph": ("XCONNECT_GRAPH", None),
}


def parse_cmd(args: List[str]) -> Action:
    sub = _help_or("cmd", args)
    if sub == "update-metadata":
        import json

        text = _required("cmd", args, 1)
        try:
            payload = json.loads(text)
        except ValueError:
            raise UsageError("cmd", f"update-metadata: not valid JSON: {text}") from None
        # The server stores the payload's first key/value, so it must be an
        # object sent as JSON, not a string.
        if not isinstance(payload, dict):
            raise UsageError("cmd", "update-metadata: the payload must be a JSON object")
        return _simple("POST", "/commands", json_body({"op": "UPDATE_METADATA", "payload": payload}))
    if sub not in _COMMANDS:
        raise UsageError("cmd")
    op, argument = _COMMANDS[sub]
    if argument == "required":
        payload = _required("cmd", args, 1)
    elif argument == "optional":
        payload = _arg(args, 1)
    else:
        payload = ""
    return _simple("POST", "/commands", json_body({"op": op, "payload": payload}))


def _meta(group: str, path: str, save_words: tuple) -> Parser:
    def parse(args: List[str]) -> Action:
        sub = _help_or(group, args)
        if sub in ("ls", "list"):
            return _simple("GET", path)
        if sub in save_words:
            key = _required(group, args, 1)
            return _simple("PUT", f"{path}/{url_part(key)}", arg_bytes(_arg(args, 2)))
        if sub == "delete":
            key = _required(group, args, 1)
            return _simple("DELETE", f"{path}/{url_part(key)}")
        raise UsageError(group)

    return parse


def parse_storage(args: List[str]) -> Action:
    if _help_or("storage", args) == "gc":
        return _simple("POST", "/storage/gc")
    raise UsageError("storage")


def parse_objects(args: List[str]) -> Action:
    sub = _help_or("objects", args)
    if sub in ("ls", "list"):
        return _simple("GET", "/objects")
    if sub == "get":
        sha = _required("objects", args, 1)
        return Action(lambda ctx: _transfer().get_object(ctx, sha), own_output=True)
    if sub == "put":
        path = _required("objects", args, 1)
        sha = _required("objects", args, 2)
        source = _transfer().parse_source(path, "objects")
        return Action(lambda ctx: _transfer().put_object(ctx, source, sha))
    raise UsageError("objects")


def parse_steps(args: List[str]) -> Action:
    sub = _help_or("steps", args)
    if sub in ("ls", "list"):
        return _simple("GET", "/steps")
    if sub == "get":
        rev = _required("steps", args, 1)
        return _simple("GET", f"/steps/{url_part(rev)}")
    if sub == "show-progress":
        rest = args[1:]
        if "--follow" in rest:
            rest.remove("--follow")
            if len(rest) != 1 or not rest[0]:
                raise UsageError("steps")
            return Action(lambda ctx: _follow().show_progress(ctx, rest[0]))
        rev = _required("steps", args, 1)
        return _simple("GET", f"/steps/{url_part(rev)}/progress")
    if sub == "put":
        path = _required("steps", args, 1)
        rev = _required("steps", args, 2)
        return Action(lambda ctx: _transfer().put_step(ctx, path, rev))
    if sub == "install":
        path = _required("steps", args, 1)
        rev = _arg(args, 2)
        return Action(lambda ctx: _install().install_step(ctx, path, rev))
    raise UsageError("steps")


def _daemon_restart(path: str) -> Action:
    def run(ctx: Context) -> int:
        resp = ctx.request("PUT", path, json_body({"action": "stop"}))
        if resp.status == 200:
            resp = ctx.request("PUT", path, json_body({"action": "start"}))
        return ctx.report(resp)

    return Action(run)


def parse_daemons(args: List[str]) -> Action:
    sub = _help_or("daemons", args)
    if sub in ("ls", "list"):
        return _simple("GET", "/daemons")
    if sub in ("start", "stop", "restart"):
        path = f"/daemons/{url_part(_required('daemons', args, 1))}"
        if sub == "restart":
            return _daemon_restart(path)
        return _simple("PUT", path, json_body({"action": sub}))
    raise UsageError("daemons")


def parse_drivers(args: List[str]) -> Action:
    sub = _help_or("drivers", args)
    if sub in ("ls", "list"):
        return _simple("GET", "/drivers")
    if sub in ("load", "unload"):
        name = _arg(args, 1)
        path = f"/drivers/{url_part(name)}/{sub}" if name else f"/drivers/{sub}"
        return _simple("PUT", path)
    raise UsageError("drivers")


def _follow():
    # NOTE: imported on use, so other commands start without it.
    from pvcontrol import follow

    return follow


def _option_value(group: str, args: List[str], index: int) -> str:
    if index + 1 >= len(args) or not args[index + 1]:
        raise UsageError(group, f"option {args[index]} needs a value")
    return args[index + 1]


def parse_events(args: List[str]) -> Action:
    types: List[str] = []
    since = None
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--help":
            raise HelpRequested("events")
        if word == "--types":
            types += [t for t in _option_value("events", args, index).split(",") if t]
            index += 2
        elif word == "--since":
            since = _option_value("events", args, index)
            if not since.isdigit():
                raise UsageError("events", f"--since needs an event id, not {since}")
            index += 2
        else:
            raise UsageError("events")
    return Action(lambda ctx: _follow().events(ctx, types, since))


def parse_logs(args: List[str]) -> Action:
    name = None
    follow = False
    lines = None
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--help":
            raise HelpRequested("logs")
        if word in ("-f", "--follow"):
            follow = True
            index += 1
        elif word in ("-n", "--lines"):
            value = _option_value("logs", args, index)
            if not value.isdigit():
                raise UsageError("logs", f"-n needs a number of lines, not {value}")
            lines = int(value)
            index += 2
        elif name is None and word and not word.startswith("-"):
            name = word
            index += 1
        else:
            raise UsageError("logs")
    if name is None:
        raise UsageError("logs")
    return Action(lambda ctx: _follow().logs(ctx, name, follow, lines))


_SAVE = ("save", "upload")

#: command word -> parser; the parser raises UsageError naming its group.
COMMANDS: Dict[str, Parser] = {
    "ls": _no_arguments("ls", "/containers"),
    "list": _no_arguments("ls", "/containers"),
    # The test plan spells it "container"; upstream only knew "containers".
    "containers": parse_containers,
    "container": parse_containers,
    "groups": _listing("groups", "/groups"),
    "signal": parse_signal,
    "cmd": parse_cmd,
    "command": parse_cmd,
    "commands": parse_cmd,
    "usrmeta": _meta("usrmeta", "/user-meta", _SAVE),
    "devmeta": _meta("devmeta", "/device-meta", _SAVE),
    "buildinfo": _no_arguments("buildinfo", "/buildinfo"),
    "storage": parse_storage,
    "objects": parse_objects,
    "steps": parse_steps,
    "config": _listing("config", "/config"),
    "conf": _listing("conf", "/config2"),
    "configuration": _listing("conf", "/config2"),
    "graph": _listing("graph", "/xconnect-graph"),
    "daemons": parse_daemons,
    "drivers": parse_drivers,
    "events": parse_events,
    "logs": parse_logs,
    # pvcore's own extras (not in upstream's pvcontrol)
    "settings": _no_arguments("settings", "/_pvcore/settings"),
}


def parse_command(argv: List[str]) -> Action:
    """Parse ``<command> [arguments]`` into an :class:`Action`.

    :raises UsageError: unknown command or bad arguments;
        :class:`HelpRequested` (a subclass) for ``--help``.
    """
    if not argv:
        raise UsageError(None)
    word, rest = argv[0], argv[1:]
    if word == "--help":
        raise HelpRequested(None)
    if word not in COMMANDS:
        raise UsageError(None, f"unknown command: {word}")
    return COMMANDS[word](rest)
