"""Render the hook reference in docs/plugins.md from the hookspec docstrings.

The core's hooks (:mod:`pvcore.hookspecs`) come first, then the contract of
each plugin pvcore ships (its ``hookspecs`` module, docs/architecture.md §3):
the plugins the ``pvcore`` distribution declares, whatever else is installed.

``python -m pvcore_dev.hookdoc docs/plugins.md`` rewrites the part between the
``<!-- hooks:begin -->`` and ``<!-- hooks:end -->`` markers;
``--check`` exits 1 instead when the committed reference is stale.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import sys

from pvcore import hookspecs

BEGIN, END = "<!-- hooks:begin -->", "<!-- hooks:end -->"


def _sections():
    """(banner, [hook functions]) in source order, following the module's banners."""
    source = inspect.getsource(hookspecs)
    sections, current = [], None
    for line in source.splitlines():
        banner = re.match(r"^# ([A-Z][^-=].*)$", line)
        hook = re.match(r"^def (pvcore_\w+)\(", line)
        if banner:
            current = (banner.group(1).strip(), [])
            sections.append(current)
        elif hook and current is not None:
            current[1].append(getattr(hookspecs, hook.group(1)))
    return [s for s in sections if s[1]] + contract_sections()


def contract_modules(distribution: str = "pvcore"):
    """``(plugin, hookspecs module)`` of each plugin of ``distribution`` that owns a contract."""
    entry_points = importlib.metadata.distribution(distribution).entry_points
    names = sorted({ep.value.split(":")[0] for ep in entry_points if ep.group == "pvcore"})
    found = []
    for name in names:
        try:
            found.append((name, importlib.import_module(name + ".hookspecs")))
        except ImportError:
            continue
    return found


def contract_sections():
    """One section per plugin contract: ``Contract of <plugin>``, hooks in source order."""
    sections = []
    for name, module in contract_modules():
        hooks = [getattr(module, m.group(1)) for m in re.finditer(r"^def (\w+)\(", inspect.getsource(module), re.M)]
        if hooks:
            sections.append((f"Contract of {name} (`{name}/hookspecs.py`)", hooks))
    return sections


def render() -> str:
    """The generated Markdown reference of every hook."""
    out = []
    for banner, hooks in _sections():
        out.append(f"### {banner}\n")
        for func in hooks:
            opts = getattr(func, "pvcore_spec", {}) or {}
            flag = " — *firstresult*" if opts.get("firstresult") else ""
            signature = str(inspect.signature(func)).replace("'", "")
            out.append(f"#### `{func.__name__}{signature}`{flag}\n")
            out.append(inspect.cleandoc(func.__doc__ or "") + "\n")
    return "\n".join(out).rstrip() + "\n"


def between(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with what lies between the markers ``begin`` and ``end`` replaced by ``body``."""
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def update(text: str) -> str:
    """``text`` with the reference between the markers replaced."""
    return between(text, BEGIN, END, render())


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"] or ["docs/plugins.md"]
    stale = False
    for path in paths:
        with open(path) as fh:
            text = fh.read()
        new = update(text)
        if new != text:
            stale = True
            if not check:
                with open(path, "w") as fh:
                    fh.write(new)
    if check and stale:
        print("hook reference is stale: run python -m pvcore_dev.hookdoc docs/plugins.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
