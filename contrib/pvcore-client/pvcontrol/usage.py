"""Usage texts of pvcontrol and of each command group."""

MAIN = """\
Usage: pvcontrol [options] <command> [arguments]
Control Pantavisor through its pv-ctrl socket.

Commands:
  ls | list                      list the containers of the running revision
  containers (container) ...     list, start, stop or restart containers
  groups ...                     list container groups
  signal ...                     send a status signal (ready, alive)
  cmd (command, commands) ...    queue a command for the state machine
  usrmeta ... / devmeta ...      user and device metadata
  buildinfo                      show Pantavisor build information
  storage ...                    storage maintenance (gc)
  objects ...                    list, download and upload objects
  steps ...                      list, read and install revisions
  config ... / conf ...          show the configuration (legacy / full)
  graph ...                      show the xconnect service graph
  daemons ...                    list, start, stop or restart daemons
  drivers ...                    list, load or unload managed drivers
  events [--types t,...]         follow device events (one JSON line each)
  logs <name> [-f] [-n N]        show (and follow) a container's console log
  settings                       show pvcore's settings (value, source, help)

Options (before the command):
  -h, --help           show this help
  -v                   print request and status lines on stderr
  -s, --socket <path>  pv-ctrl socket (default: $PVCONTROL_SOCKET, the
                       checkout's var/run/pv-ctrl, /run/pantavisor/pv/pv-ctrl,
                       /pv/pv-ctrl, then /pantavisor/pv-ctrl)
  -f <path>            write output to <path> instead of stdout
  -m <message>         commit message for steps put / steps install
  --pretty             pretty-print JSON output

Run "pvcontrol <command> --help" for the arguments of a command.
"""

GROUPS = {
    "ls": """\
Usage: pvcontrol ls
List the containers of the running revision.
""",
    "containers": """\
Usage: pvcontrol containers <ls|start|stop|restart> [name]
Container lifecycle ("container" is accepted as an alias).
  pvcontrol containers ls              list containers and their status
  pvcontrol containers start <name>    start a stopped container
  pvcontrol containers stop <name>     stop a running container
  pvcontrol containers restart <name>  restart a container
""",
    "groups": """\
Usage: pvcontrol groups <ls>
  pvcontrol groups ls  list container groups
""",
    "signal": """\
Usage: pvcontrol signal <ready|alive>
Report this container's status to Pantavisor.
  pvcontrol signal ready  the container is ready
  pvcontrol signal alive  the container is alive
""",
    "cmd": """\
Usage: pvcontrol cmd <subcommand> [argument]
Queue a command for the Pantavisor state machine.
  run <rev>               run an installed revision (LOCAL_RUN)
  run-commit <rev>        run a revision and commit it (LOCAL_RUN_COMMIT)
  try-once <rev>          try a revision once (TRY_ONCE)
  apply <rev>             apply a revision (LOCAL_APPLY)
  reboot [message]        reboot the device
  poweroff [message]      power the device off
  make-factory [rev]      make <rev> (default: running) the factory revision
  run-gc                  run the garbage collector
  enable-ssh              start the SSH server until reboot
  disable-ssh             stop the SSH server until reboot
  go-remote               leave local mode if the configuration allows it
  unclaim                 drop the hub credentials, device becomes claimable
  defer-reboot <timeout>  push back a pending debug-shell reboot
  xconnect-graph          refresh the xconnect graph (XCONNECT_GRAPH)
  update-metadata <json>  send a JSON object as metadata (UPDATE_METADATA)
""",
    "usrmeta": """\
Usage: pvcontrol usrmeta <ls|save|delete> [key] [value]
  pvcontrol usrmeta ls                  list user metadata
  pvcontrol usrmeta save <key> [value]  create or update a key
  pvcontrol usrmeta delete <key>        delete a key
""",
    "devmeta": """\
Usage: pvcontrol devmeta <ls|save|upload|delete> [key] [value]
  pvcontrol devmeta ls                  list device metadata
  pvcontrol devmeta save <key> [value]  create or update a key (alias: upload)
  pvcontrol devmeta delete <key>        delete a key
""",
    "buildinfo": """\
Usage: pvcontrol buildinfo
Show the build information of Pantavisor.
""",
    "settings": """\
Usage: pvcontrol settings
Show every pvcore setting, core and plugin: its value, where the value came
from (default, file, environment, override), its default, environment
variable and help; secrets are masked (a pvcore extra: GET /_pvcore/settings).
""",
    "storage": """\
Usage: pvcontrol storage <gc>
  pvcontrol storage gc  collect garbage now and report the reclaimed bytes
""",
    "objects": """\
Usage: pvcontrol objects <ls|get|put> [path] [sha256]
  pvcontrol objects ls               list stored objects
  pvcontrol objects get <sha>        download an object (to stdout or -f file)
  pvcontrol objects put <path> <sha> upload a file as object <sha>;
                                     path "-<size>" reads <size> bytes of stdin
""",
    "steps": """\
Usage: pvcontrol steps <ls|get|show-progress|put|install> [path] [rev]
  pvcontrol steps ls                        list revisions
  pvcontrol steps get <rev>                 show the state JSON of a revision
  pvcontrol steps show-progress <rev>       show the progress of a revision
  pvcontrol steps show-progress --follow <rev>
                                            print each progress change until
                                            the revision ends: exit 0 on
                                            DONE/UPDATED, 2 on ERROR/WONTGO
  pvcontrol steps put <path> locals/<name>  upload a state JSON ("-" = stdin)
  pvcontrol steps install <file.tgz> [rev]  upload a compressed step (json +
                                            objects/); rev defaults to
                                            locals/<sha256 of the file>
""",
    "config": """\
Usage: pvcontrol config <ls>
  pvcontrol config ls  show the legacy configuration
""",
    "conf": """\
Usage: pvcontrol <conf|configuration> <ls>
  pvcontrol conf ls  show the full configuration
""",
    "graph": """\
Usage: pvcontrol graph <ls>
  pvcontrol graph ls  show the xconnect service graph
""",
    "daemons": """\
Usage: pvcontrol daemons <ls|start|stop|restart> [name]
  pvcontrol daemons ls              list daemons
  pvcontrol daemons start <name>    start a daemon
  pvcontrol daemons stop <name>     stop a daemon
  pvcontrol daemons restart <name>  stop, then start if the stop succeeded
""",
    "events": """\
Usage: pvcontrol events [--types <type,...>] [--since <id>]
Print device events as they happen, one JSON object per line, until
interrupted. A type also matches its dotted sub-types ("container" matches
"container.status"). --since <id> first replays what followed event <id>.
""",
    "logs": """\
Usage: pvcontrol logs <name> [-f] [-n <lines>]
Print the console log of container <name>.
  -f, --follow        keep printing new lines as the container writes them
  -n, --lines <N>     start with the last N lines only
""",
    "drivers": """\
Usage: pvcontrol drivers <ls|load|unload> [name]
  pvcontrol drivers ls             list this container's drivers
  pvcontrol drivers load [name]    load all (or one) manual drivers
  pvcontrol drivers unload [name]  unload all (or one) manual drivers
""",
}
