"""The package's shape: no import cycle among its modules, and every import of its own modules
deferred into a function says why (a heavy library it would load for every caller, or a real cycle)."""

import ast
from pathlib import Path

import selfreward

PACKAGE = Path(selfreward.__file__).parent


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text())
    return out


def own_imports(nodes, known: set[str]) -> set[str]:
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selfreward"):
            found |= {t for t in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if t in known}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                found.append(path[path.index(target):] + [target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


def test_no_module_of_the_package_imports_itself_back_at_import_time():
    trees = modules()
    graph = {name: own_imports(tree.body, set(trees)) - {name} for name, tree in trees.items()}
    assert not cycles(graph), cycles(graph)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the check sees one


def test_every_deferred_import_of_the_package_says_why():
    """A comment on the import line or on the two lines above it."""
    trees = modules()
    unexplained = []
    for name, tree in trees.items():
        path = PACKAGE.parent / Path(*name.split("."))
        source = (path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py").read_text()
        lines = source.splitlines()
        deferred = {inner for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for inner in ast.walk(node) if isinstance(inner, (ast.Import, ast.ImportFrom))}
        unexplained += [f"{name}:{i.lineno}" for i in deferred if own_imports([i], set(trees))
                        and "#" not in " ".join(lines[max(i.lineno - 3, 0):i.lineno])]
    assert not unexplained, sorted(unexplained)
