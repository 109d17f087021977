"""pvcontrol's entry point: global options, socket selection, dispatch."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing only for type checkers: see pvcore_client/client.py
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

from pvcore_client import NoResponseError, PvClient, default_socket_path, is_socket
from pvcontrol import usage
from pvcontrol.commands import parse_command
from pvcontrol.context import (
    CliError,
    Context,
    HelpRequested,
    Options,
    UsageError,
)

_VALUE_OPTIONS = {"-s": "socket", "--socket": "socket", "-f": "output", "-m": "message"}


def parse_options(argv: Sequence[str]) -> Tuple[Options, List[str]]:
    """Split *argv* into the global options and ``<command> [arguments]``.

    Options must come before the command, as upstream's grammar has it; the
    first word that is not an option starts the command.
    """
    opts = Options()
    args = list(argv)
    while args:
        word = args[0]
        if word == "-h":
            raise HelpRequested(None)
        if word == "-v":
            opts.verbose = True
        elif word == "--pretty":
            opts.pretty = True
        elif word.startswith("--socket="):
            opts.socket = word.split("=", 1)[1]
        elif word in _VALUE_OPTIONS:
            if len(args) < 2:
                raise UsageError(None, f"option {word} needs a value")
            setattr(opts, _VALUE_OPTIONS[word], args[1])
            args.pop(0)
        else:
            break
        args.pop(0)
    return opts, args


def _usage_text(group: Optional[str]) -> str:
    return usage.GROUPS.get(group, usage.MAIN) if group else usage.MAIN


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run pvcontrol with *argv* (default ``sys.argv[1:]``); return the exit
    status (0 ok, 1 usage/local error, 48/60/70/75/255 from the server)."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        opts, rest = parse_options(argv)
        action = parse_command(rest)
    except HelpRequested as help_request:
        sys.stdout.write(_usage_text(help_request.group))
        return 0
    except UsageError as error:
        if error.detail:
            sys.stderr.write(f"pvcontrol: {error.detail}\n")
        sys.stderr.write(_usage_text(error.group))
        return 1

    socket_path = opts.socket if opts.socket is not None else default_socket_path()
    if not is_socket(socket_path):
        sys.stdout.write(f"ERROR: {socket_path} not found\n")
        return 1

    out = sys.stdout.buffer
    if opts.output and not action.own_output:
        try:
            out = open(opts.output, "wb")
        except OSError as exc:
            sys.stderr.write(f"ERROR: cannot write {opts.output}: {exc.strerror}\n")
            return 1

    client = PvClient(socket_path)
    ctx = Context(options=opts, client=client, out=out, err=sys.stderr.buffer)
    try:
        return action.run(ctx)
    except CliError as error:
        stream = ctx.out if error.to_stdout else ctx.err
        stream.write(error.message.encode("utf-8", "surrogateescape") + b"\n")
        stream.flush()
        return error.code
    except NoResponseError:
        sys.stderr.write("ERROR: got no response\n")
        return 1
    except BrokenPipeError:
        # The reader went away (e.g. "| head"); nothing more can be shown.
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
        if out is not sys.stdout.buffer:
            out.close()
