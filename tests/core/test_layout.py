"""The core stays a small framework: no import cycle inside ``pvcore/`` and no
module over 500 lines (docs/architecture.md §1).

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a
cycle hidden that way still ties the modules together for a reader and for
the next refactoring.
"""
import ast
import pathlib

import pvcore

CORE = pathlib.Path(pvcore.__file__).parent
MAX_LINES = 500


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules():
    """``{module name: path}`` of every Python module in the core package."""
    return {_module_name(path): path for path in sorted(CORE.rglob("*.py"))}


def imports_of(name: str, path: pathlib.Path, known) -> set:
    """The core modules ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # `from pvcore import caller` imports the module pvcore.caller;
                # `from pvcore import hookimpl`, the package's own __init__.
                module = f"{base}.{alias.name}"
                found.add(module if module in known else base)
    return {module for module in found if module in known and module != name}


def import_graph():
    known = core_modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_core_has_no_import_cycle():
    found = cycles(import_graph())
    assert found == [], "modules that import each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle():
    # The check itself must be able to fail.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_are_resolved_as_modules(tmp_path):
    known = {"pvcore.app", "pvcore.stash", "pvcore.core", "pvcore"}
    source = tmp_path / "app.py"
    source.write_text("from pvcore import hookimpl, stash\nfrom .core import Core\nif 0:\n    import pvcore.app\n")
    assert imports_of("pvcore.app", source, known) == {"pvcore", "pvcore.stash", "pvcore.core"}


def test_no_core_module_is_over_500_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in core_modules().items()}
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert too_long == {}, f"split these by concern (at most {MAX_LINES} lines each): {too_long}"


def test_no_built_in_plugin_module_is_over_500_lines():
    # The same rule for the plugins pvcore ships: a module is one room.
    plugins = CORE.parent / "plugins"
    sizes = {str(path.relative_to(plugins)): len(path.read_text().splitlines())
             for path in sorted(plugins.rglob("*.py"))}
    assert sizes, f"no plugins found under {plugins}"
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert too_long == {}, f"split these by concern (at most {MAX_LINES} lines each): {too_long}"
