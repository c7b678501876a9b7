"""Does the goal test the worktree? Asking the goal's Python (or node) where it finds the project.

A run works in its own worktree, but a goal like ``pytest -q`` run from the
user's dev venv may import the project from the user's checkout instead: the
venv holds an *editable* install (``pip install -e .``), which points back at
the checkout it was made in (a ``.pth`` path or a setuptools finder), or the
goal's ``PYTHONPATH`` names the checkout. Every iteration would then test the
unchanged checkout, and the loop could never converge (or pass falsely).

Whether that happens depends on the interpreter's own rules (``python -m``
puts the working directory first, a console script does not; a relative
``PYTHONPATH`` beats site-packages), so outloop does not guess: before the
baseline, with no code of the agent in the worktree yet, it asks each Python
the goal's script names, in the goal's environment, where ``importlib`` would
find each of the project's top-level packages. Nothing of the project is
imported (``find_spec`` of a top-level name only locates it) and nothing is
imported from the worktree at all; it is asked outside the sandbox because
the sandbox hides the checkout, and the goal would then fail to import the
project rather than show where it looks.

Node has the same trap: ``require`` looks in every ``node_modules`` above the
working directory (a stray ``~/node_modules`` is above every worktree under
``$HOME``) and in ``NODE_PATH``, so an ``npm link`` or a workspace symlink
there leads back to the checkout. The goal's ``node`` is asked likewise, with
``require.resolve`` of the project's package names (the root ``package.json``
and its workspaces), which locates a package without loading it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import CouldNotRun
from outloop_cli.process.spawn import run_captured
from outloop_cli.shell_words import script_words

# packages a repository holds that are not the project itself
_NOT_THE_PROJECT = frozenset({"tests", "test", "docs", "doc", "examples", "scripts", "bench"})
_MAX_PACKAGES = 20
_PROBE_TIMEOUT = 60.0

# run by the goal's interpreter: where would each name be found? (never imports it)
_PROBE = """
import sys
# nothing is imported from the working directory: it goes back only for find_spec
first = sys.path.pop(0)
import importlib.util, json
if sys.argv[1] == "module":
    # `python -m x` and `python -c` put the working directory first; a console
    # script (`pytest`) has its own directory there instead
    sys.path.insert(0, first)
found = {}
for name in sys.argv[2:]:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is not None:
        found[name] = [spec.origin or ""] + list(spec.submodule_search_locations or [])
print("OUTLOOP-PROBE " + json.dumps(found))
"""

# run by the goal's node: where would each package name resolve from the worktree?
# (require.resolve locates, it never loads; package.json first, since a package
# may have no main file, then the name itself when `exports` hides package.json)
_NODE_PROBE = """
const found = {};
for (const name of process.argv.slice(1)) {
  for (const request of [name + "/package.json", name]) {
    try {
      found[name] = [require.resolve(request, {paths: [process.cwd()]})];
      break;
    } catch (e) {}
  }
}
console.log("OUTLOOP-PROBE " + JSON.stringify(found));
"""
_NODE_PACKAGE_NAME = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")


@dataclass(frozen=True)
class Interpreter:
    """A Python the goal's script runs, and how it sets up ``sys.path``."""

    python: Path
    # "module": `python -m x` / `python x.py` (working directory first); "script": a
    # console script whose shebang names the python; "node": node itself, or a
    # script whose shebang names it (npm, npx, jest)
    mode: str
    named_as: str
    # `PYTHONPATH=src pytest`: assignments the script makes for this command only
    assignments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutsideImport:
    """A project package an interpreter would import from outside the worktree."""

    interpreter: Interpreter
    package: str
    found_at: Path


def project_packages(worktree: Path) -> list[str]:
    """Top-level packages of the project: ``<name>/__init__.py`` at the root or under ``src/``."""
    names = []
    for base in (worktree, worktree / "src"):
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            if (
                child.is_dir()
                and not child.is_symlink()
                and child.name.isidentifier()
                and child.name not in _NOT_THE_PROJECT
                and (child / "__init__.py").is_file()
            ):
                names.append(child.name)
    return list(dict.fromkeys(names))[:_MAX_PACKAGES]


def node_packages(worktree: Path) -> list[str]:
    """The names the project's own Node packages go by: the root ``package.json`` and workspaces."""
    root = _package_json(worktree / "package.json")
    if root is None:
        return []
    names = [root.get("name")]
    workspaces = root.get("workspaces")
    if isinstance(workspaces, dict):
        workspaces = workspaces.get("packages")
    if isinstance(workspaces, list):
        for pattern in workspaces[:_MAX_PACKAGES]:
            if not isinstance(pattern, str) or pattern.startswith(("/", "!")) or ".." in pattern:
                continue
            for manifest in sorted(worktree.glob(f"{pattern.rstrip('/')}/package.json")):
                names.append((_package_json(manifest) or {}).get("name"))
    valid = [n for n in names if isinstance(n, str) and _NODE_PACKAGE_NAME.match(n)]
    return list(dict.fromkeys(valid))[:_MAX_PACKAGES]


def _package_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def goal_interpreters(script: str, path_env: str | None) -> list[Interpreter]:
    """The Pythons and nodes a goal's shell script starts, directly or through a script."""
    words = script_words(script)
    found: list[Interpreter] = []
    assignments: list[tuple[str, str]] = []
    for word in words:
        name, equals, value = word.partition("=")
        if equals and name.isidentifier():
            assignments.append((name, value))
            continue
        if not word or word.startswith("-"):
            continue
        program = shutil.which(word, path=path_env)
        if program is None:
            assignments = []
            continue
        path = Path(program)
        runtime = path if _runtime_kind(path) else _shebang(path)
        if runtime is not None:
            kind = _runtime_kind(runtime)
            mode = "node" if kind == "node" else "module" if runtime == path else "script"
            found.append(Interpreter(runtime, mode, word, tuple(assignments)))
        assignments = []
    return list(dict.fromkeys(found))


def outside_imports(
    interpreters: Sequence[Interpreter],
    packages: Sequence[str],
    *,
    worktree: Path,
    checkout: Path,
    env: Mapping[str, str],
    node_packages: Sequence[str] = (),
) -> list[OutsideImport]:
    """Where each interpreter finds a package that is not the worktree's copy."""
    checkout = checkout.resolve()
    worktree = worktree.resolve()
    found = []
    for interpreter in interpreters:
        if interpreter.mode == "node":
            names = list(node_packages)
            argv = [str(interpreter.python), "-e", _NODE_PROBE]
        else:
            names = list(packages)
            argv = [str(interpreter.python), "-c", _PROBE, interpreter.mode]
        if not names:
            continue
        try:
            done = run_captured(
                [*argv, *names],
                cwd=worktree,
                env={**env, **dict(interpreter.assignments)},
                timeout=_PROBE_TIMEOUT,
            )
        except CouldNotRun:
            continue  # the goal itself will say what is wrong with its interpreter
        for name, locations in _probe_result(done.stdout).items():
            for location in locations:
                path = Path(location)
                if _inside(path, checkout) and not _inside(path, worktree):
                    found.append(OutsideImport(interpreter, name, path))
                    break
    return found


def describe(found: Sequence[OutsideImport], checkout: Path) -> tuple[str, str]:
    """The message and hint for a goal that would test ``checkout`` instead of the worktree."""
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    if first.interpreter.mode == "node":
        message = (
            f"the goal would test your checkout ({checkout}), not the run's worktree: "
            f"`{first.interpreter.named_as}` ({first.interpreter.python}) resolves "
            f"`{first.package}` to {first.found_at}{more}, through a `node_modules` link "
            "(`npm link`, a workspace symlink) above the worktree or a NODE_PATH naming the "
            "checkout"
        )
        hint = (
            "make the goal resolve the worktree's copy: install the dependencies in the "
            "worktree as its first step (`npm ci && npm test`), remove the `node_modules` "
            "link above the worktree that leads into the checkout, or drop the NODE_PATH "
            "that names the checkout"
        )
        return message, hint
    message = (
        f"the goal would test your checkout ({checkout}), not the run's worktree: "
        f"`{first.interpreter.named_as}` ({first.interpreter.python}) imports "
        f"`{first.package}` from {first.found_at}{more}, most likely through an editable "
        "install (`pip install -e .`) or a PYTHONPATH naming the checkout"
    )
    hint = (
        "make the goal import the worktree's copy: run the tests from the sources "
        "(`PYTHONPATH=src pytest -q` for a src/ layout, `python -m pytest` for a flat one), "
        "install non-editable (`pip install .`), or let the goal make its own environment "
        "in the worktree (`uv run pytest -q`)"
    )
    return message, hint


def _runtime_kind(path: Path) -> str | None:
    name = path.name
    if name.startswith("python"):
        return "python"
    if name == "node" or (name.startswith("node") and name[4:].replace(".", "").isdigit()):
        return "node"
    return None


def _shebang(path: Path) -> Path | None:
    """The python or node a script's ``#!`` line names, if it names one."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        program = shutil.which(words[1])
        words = [program] if program else []
    if words and _runtime_kind(Path(words[0])):
        return Path(words[0])
    return None


def _probe_result(stdout: bytes) -> dict[str, list[str]]:
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        if line.startswith("OUTLOOP-PROBE "):
            try:
                data = json.loads(line.removeprefix("OUTLOOP-PROBE "))
            except ValueError:
                return {}
            if isinstance(data, dict):
                return {str(k): [str(x) for x in v] for k, v in data.items() if isinstance(v, list)}
    return {}


def _inside(path: Path, root: Path) -> bool:
    try:
        resolved = path.resolve()
    except OSError:
        return False
    return resolved == root or root in resolved.parents
