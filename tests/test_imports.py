"""The library's imports flow one way: no module imports, at any level (function bodies included), a
module that imports it back; and the library never imports the trainer or the exporters."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_preresnet"
NAME = PACKAGE.name


def modules():
    """Module name -> source path of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name, path, known):
    """The package's modules that ``name`` imports anywhere in its source (the package itself left out:
    importing any module runs it first)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # ``from package import module`` imports the module; ``from module import name`` the module.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {n for n in names if n in known and n not in (name, NAME)}
    return found


def graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def circles(edges):
    """Every import circle of ``edges`` (module -> imported modules), each as a closed path."""
    found, state = [], {}

    def visit(name, path):
        state[name] = "open"
        for other in sorted(edges[name]):
            if state.get(other) == "open":
                found.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    return found


def test_the_walker_finds_a_circle_through_a_function_level_import(tmp_path):
    source = tmp_path / "pkg"
    source.mkdir()
    (source / "a.py").write_text("from pkg import b\n")
    (source / "b.py").write_text("def f():\n    from pkg.a import thing\n")
    known = {"pkg.a": source / "a.py", "pkg.b": source / "b.py"}
    edges = {name: imports_of(name, path, known) for name, path in known.items()}
    assert circles(edges) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_the_library_has_no_import_circle():
    assert circles(graph()) == []


def test_the_library_never_imports_the_trainer_or_the_exporters():
    library = {name: edges for name, edges in graph().items()
               if not name.startswith((f"{NAME}.train", f"{NAME}.export")) and name != f"{NAME}.__main__"}
    reaching = {name: sorted(n for n in edges if n.startswith((f"{NAME}.train", f"{NAME}.export")))
                for name, edges in library.items()}
    assert {name: found for name, found in reaching.items() if found} == {}
