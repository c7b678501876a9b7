"""The seams docs/architecture.md names, checked on the source so they stay true.

Each rule reads the package's own modules with ``ast`` (no import, no
execution) and names the file and line that breaks it, so a failure says
where the seam leaks rather than that it does.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "outloop_cli"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]

    def inside(self, prefix: str) -> bool:
        return self.name == prefix or self.name.startswith(prefix + ".")

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"


def _load() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return modules


MODULES = _load()


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _strings(module: Module) -> Iterator[ast.Constant]:
    """String literals of the code, docstrings left out."""
    docs = _docstring_nodes(module.tree)
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node


def _imports(module: Module) -> Iterator[tuple[str, ast.AST]]:
    """Every outloop_cli module this one imports (lazy and TYPE_CHECKING imports included)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield target, node
            for alias in node.names:
                yield f"{target}.{alias.name}", node


def _dependencies(module: Module) -> set[str]:
    deps = {target for target, _ in _imports(module) if target in MODULES}
    # importing a.b.c runs a/__init__ and a/b/__init__ first
    for name in [*deps, module.name]:
        parts = name.split(".")
        deps.update(".".join(parts[:i]) for i in range(1, len(parts)))
    deps.discard(module.name)
    return deps


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph = {name: _dependencies(m) & set(MODULES) for name, m in MODULES.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "name", sorted(n for n, m in MODULES.items() if m.is_package and n != "outloop_cli")
)
def test_package_inits_import_nothing(name: str) -> None:
    """Importers name the module that defines a thing: no re-exports, no hidden cycles."""
    module = MODULES[name]
    statements = [n for n in module.tree.body if not isinstance(n, ast.Expr)]
    assert statements == [], f"{module.where(statements[0])}: only a docstring belongs here"


def _violations(rule: str) -> list[str]:
    return [found for module in MODULES.values() for found in RULES[rule](module)]


def _git_argv(module: Module) -> Iterator[str]:
    """A git command line built outside git/: a ["git", ...] literal or outloop's Git class."""
    if module.inside("outloop_cli.git"):
        return
    # `via in ("git", "helper")` is a membership test, not a command line
    members = {
        id(c)
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Compare)
        for c in node.comparators
    }
    for node in ast.walk(module.tree):
        if (
            isinstance(node, (ast.List, ast.Tuple))
            and len(node.elts) > 1
            and id(node) not in members
        ):
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == "git":
                yield f"{module.where(node)}: a git argv"
        if isinstance(node, ast.Attribute) and node.attr == "_git":
            yield f"{module.where(node)}: reaches into a Repository's or Worktree's Git"
    for target, node in _imports(module):
        if target in ("outloop_cli.git.cli.Git", "outloop_cli.git.cli.git_env"):
            yield f"{module.where(node)}: imports {target}"


_SPAWNERS = {"subprocess", "pty", "multiprocessing", "asyncio.subprocess"}
_SPAWN_CALLS = {
    "system",
    "popen",
    "posix_spawn",
    "posix_spawnp",
    "fork",
    "forkpty",
    "spawnv",
    "spawnve",
    "spawnl",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "create_subprocess_exec",
    "create_subprocess_shell",
}
# credentials/ci_env re-executes outloop itself (same pid) so CI secrets leave its
# environment before anything runs; it starts no child
_SPAWN_EXCEPTIONS = {("outloop_cli.credentials.ci_env", "execve")}
# programs of their own, not part of the runner: the sandbox's relay runs inside the
# sandbox as the agent's parent; the demo agent stands in for an LLM agent; git runs the
# credential helper for each credential request
_SEPARATE_PROGRAMS = (
    "outloop_cli.sandbox.relay",
    "outloop_cli.demo_agent",
    "outloop_cli.credentials.helper_main",
)


def _spawning(module: Module) -> Iterator[str]:
    """Starting a process outside process/ (the one seam that supervises children)."""
    if module.inside("outloop_cli.process") or module.name in _SEPARATE_PROGRAMS:
        return
    for target, node in _imports(module):
        if target in _SPAWNERS:
            yield f"{module.where(node)}: imports {target}"
    for node in ast.walk(module.tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _SPAWN_CALLS
            and (module.name, node.func.attr) not in _SPAWN_EXCEPTIONS
        ):
            yield f"{module.where(node)}: calls {node.func.attr}"


def _proc_reading(module: Module) -> Iterator[str]:
    """A /proc path outside the one reader (a sandbox mounting /proc names it too)."""
    if module.name in ("outloop_cli.process.proc", "outloop_cli.sandbox.bwrap"):
        return
    for node in _strings(module):
        if node.value == "/proc" or node.value.startswith("/proc/"):
            yield f"{module.where(node)}: {node.value!r}"


def _atomic_writes(module: Module) -> Iterator[str]:
    """Rename-into-place outside store/atomic.py."""
    if module.name == "outloop_cli.store.atomic":
        return
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        if func.attr not in ("replace", "rename"):
            continue
        if isinstance(func.value, ast.Name) and func.value.id == "os":
            yield f"{module.where(node)}: os.{func.attr}"
        elif len(node.args) == 1 and not node.keywords:
            # Path.replace(target) / Path.rename(target); str.replace takes two arguments
            yield f"{module.where(node)}: .{func.attr}(...) (a path moved into place?)"


def _keyring_use(module: Module) -> Iterator[str]:
    if module.inside("outloop_cli.credentials"):
        return
    for target, node in _imports(module):
        if target == "keyring" or target.startswith("keyring."):
            yield f"{module.where(node)}: imports {target}"


# only the CLI prints; main.py is the process entry (version, errors turned into exit
# codes); the separate programs print as programs of their own
_MAY_PRINT = ("outloop_cli.cli", "outloop_cli.main", *_SEPARATE_PROGRAMS)


def _printing(module: Module) -> Iterator[str]:
    if any(module.inside(p) for p in _MAY_PRINT):
        return
    for target, node in _imports(module):
        if target in ("typer", "click", "rich") or target.startswith(("typer.", "rich.")):
            yield f"{module.where(node)}: imports {target}"
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("print", "input"):
                yield f"{module.where(node)}: {func.id}()"
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "write"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr in ("stdout", "stderr")
            ):
                yield f"{module.where(node)}: sys.{func.value.attr}.write"


# inside cli/, human text leaves through cli/terminal.py, which makes it safe for a
# terminal first; progress.py draws the live view on its own stream, cleaning each string
_MAY_WRITE_IN_CLI = ("outloop_cli.cli.terminal", "outloop_cli.cli.progress")


def _raw_cli_output(module: Module) -> Iterator[str]:
    if not module.inside("outloop_cli.cli") or any(module.inside(p) for p in _MAY_WRITE_IN_CLI):
        return
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "print":
            yield f"{module.where(node)}: print()"
        if isinstance(func, ast.Attribute) and func.attr in ("echo", "secho"):
            yield f"{module.where(node)}: .{func.attr}(...)"
        if isinstance(func, ast.Attribute) and func.attr == "write":
            target = func.value
            if isinstance(target, ast.Attribute) and target.attr == "buffer":
                target = target.value
            if isinstance(target, ast.Attribute) and target.attr in ("stdout", "stderr"):
                yield f"{module.where(node)}: sys.{target.attr}.write"


def _is_dataclass_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return (isinstance(target, ast.Name) and target.id == "dataclass") or (
        isinstance(target, ast.Attribute) and target.attr == "dataclass"
    )


def _docless_dataclasses(module: Module) -> Iterator[str]:
    # dataclasses writes a docstring for a class without one from inspect.signature: a cost
    # at every import, and it loads the inspect that cli/deferred_modules.py defers
    for node in ast.walk(module.tree):
        if (
            isinstance(node, ast.ClassDef)
            and any(_is_dataclass_decorator(d) for d in node.decorator_list)
            and ast.get_docstring(node) is None
        ):
            yield f"{module.where(node)}: dataclass {node.name} has no docstring"


RULES = {
    "dataclasses carry their own docstring": _docless_dataclasses,
    "git argv only in git/": _git_argv,
    "processes only from process/": _spawning,
    "/proc only in process/proc.py": _proc_reading,
    "rename-into-place only in store/atomic.py": _atomic_writes,
    "keyring only in credentials/": _keyring_use,
    "printing only in cli/": _printing,
    "cli/ writes through cli/terminal.py": _raw_cli_output,
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_seam(rule: str) -> None:
    assert _violations(rule) == []


def _probe(rule: str, source: str, name: str = "outloop_cli.engine.probe") -> list[str]:
    if rule.startswith("cli/"):
        name = "outloop_cli.cli.probe"
    module = Module(name, PACKAGE / name.split(".")[1] / "probe.py", ast.parse(source))
    return list(RULES[rule](module))


@pytest.mark.parametrize(
    ("rule", "source"),
    [
        ("dataclasses carry their own docstring", "@dataclass(frozen=True)\nclass P:\n    x: int"),
        ("dataclasses carry their own docstring", "@dataclasses.dataclass\nclass P:\n    x: int"),
        ("git argv only in git/", "run_captured(['git', 'status'])"),
        ("git argv only in git/", "repo._git.run('log')"),
        ("git argv only in git/", "from outloop_cli.git.cli import Git"),
        ("git argv only in git/", "argv = ('git', 'log')"),
        ("processes only from process/", "import subprocess"),
        ("processes only from process/", "import os\nos.posix_spawn('x', [], {})"),
        ("/proc only in process/proc.py", "open(f'/proc/{pid}/environ')"),
        ("/proc only in process/proc.py", "Path('/proc/self/stat')"),
        ("rename-into-place only in store/atomic.py", "os.replace(a, b)"),
        ("rename-into-place only in store/atomic.py", "tmp.replace(path)"),
        ("keyring only in credentials/", "import keyring"),
        ("printing only in cli/", "print('hi')"),
        ("printing only in cli/", "import sys\nsys.stderr.write('x')"),
        ("printing only in cli/", "import typer"),
        ("cli/ writes through cli/terminal.py", "typer.echo(name)"),
        ("cli/ writes through cli/terminal.py", "print(name)"),
        ("cli/ writes through cli/terminal.py", "sys.stdout.buffer.write(data)"),
    ],
)
def test_each_rule_catches_what_it_forbids(rule: str, source: str) -> None:
    assert _probe(rule, source), f"{rule} let this through: {source!r}"


def test_rules_leave_ordinary_code_alone() -> None:
    source = (
        "text.replace('a', 'b')\nname = 'git'\nlog.write(b'x')\nok = via in ('git', 'helper')\n"
        '@dataclass(frozen=True)\nclass Q:\n    """Has its own."""\n\n    x: int\n'
    )
    for rule in RULES:
        assert _probe(rule, source) == [], rule
