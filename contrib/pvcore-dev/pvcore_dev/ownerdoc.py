"""Render docs/architecture.md's owner tables from the plugins' declarations.

What each plugin pvcore ships owns (``pvcore_declare_ownership``,
:mod:`pvcore.ownership`) — files and folders, device-meta keys, event types
and who listens to them — is written between the ``<!-- owners:begin -->``
and ``<!-- owners:end -->`` markers of docs/architecture.md §2, so the map
cannot drift from what the framework enforces (``tests/core/test_ownerdoc.py``
fails when it does).

``python -m pvcore_dev.ownerdoc docs/architecture.md`` rewrites the tables;
``--check`` exits 1 instead when they are stale.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import sys

from pvcore import ownership
from pvcore_dev.hookdoc import between
from pvcore.ownership import MetaFact

BEGIN, END = "<!-- owners:begin -->", "<!-- owners:end -->"


def builtin_registry(distribution: str = "pvcore") -> ownership.Registry:
    """The registry of exactly the plugins ``distribution`` declares (built-ins),
    whatever else is installed."""
    from pvcore.plugins import get_plugin_manager

    eps = importlib.metadata.distribution(distribution).entry_points
    plugins = sorted((ep.name, importlib.import_module(ep.value.split(":")[0])) for ep in eps if ep.group == "pvcore")
    pm = get_plugin_manager(load_entrypoints=False, plugins=plugins, disabled=())
    return ownership.collect(pm, pm.get_name)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(registry: ownership.Registry) -> str:
    """The three Markdown tables: paths, device-meta keys, event types."""
    out = ["| path | owner | what it holds |", "|---|---|---|"]
    for entry in sorted(registry.paths, key=lambda e: e.pattern):
        if entry.help == ownership.DATA_DIR_HELP:
            continue  # one row for all below
        out.append(f"| `{entry.pattern}` | {entry.owner} | {_cell(entry.help)} |")
    out.append(f"| `<storage>/pvcore/<plugin>/` | each plugin | {ownership.DATA_DIR_HELP} |")
    out += ["", "| device-meta key | owner (its only writer) | written from |", "|---|---|---|"]
    for key, (owner, spec) in sorted(registry.device_meta.items()):
        source = (f"event `{spec.event}` ({'subject' if spec.field == 'subject' else 'data.' + spec.field})"
                  if isinstance(spec, MetaFact) else "pv_metadata's probes (refresh)")
        help = spec.help if isinstance(spec, MetaFact) else spec
        out.append(f"| `{key}` | {owner} | {source}: {_cell(help)} |")
    out += ["", "| event type | owner (its only publisher) | listeners | what it says |", "|---|---|---|---|"]
    everything = sorted(owner for owner, owns in registry.declared.items() if owns.listens is None)
    for kind, (owner, help) in sorted(registry.events.items()):
        listeners = sorted(name for name, matcher in registry.listens.items() if matcher(kind))
        names = ", ".join(listeners + [f"{name} (every type)" for name in everything if name != ownership.CORE])
        out.append(f"| `{kind}` | {owner} | {names} | {_cell(help)} |")
    return "\n".join(out) + "\n"


def update(text: str, registry: ownership.Registry) -> str:
    """``text`` with the tables between the markers replaced."""
    return between(text, BEGIN, END, render(registry))


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = ([a for a in args if a != "--check"] or ["docs/architecture.md"])[0]
    with open(path) as fh:
        text = fh.read()
    new = update(text, builtin_registry())
    if new == text:
        return 0
    if "--check" in args:
        print(f"owner tables are stale: run python -m pvcore_dev.ownerdoc {path}", file=sys.stderr)
        return 1
    with open(path, "w") as fh:
        fh.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
