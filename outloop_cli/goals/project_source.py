"""Does the goal test the worktree? Asking the goal's Python where it finds the project.

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
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class Interpreter:
    """A Python the goal's script runs, and how it sets up ``sys.path``."""

    python: Path
    # "module": `python -m x` / `python x.py` (working directory first); "script": a
    # console script whose shebang names the python
    mode: str
    named_as: str
    # `PYTHONPATH=src pytest`: assignments the script makes for this command only
    assignments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutsideImport:
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


def goal_interpreters(script: str, path_env: str | None) -> list[Interpreter]:
    """The Pythons a goal's shell script starts, directly or through a console script."""
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
        python = path if path.name.startswith("python") else _shebang(path)
        if python is not None:
            mode = "module" if python == path else "script"
            found.append(Interpreter(python, mode, word, tuple(assignments)))
        assignments = []
    return list(dict.fromkeys(found))


def outside_imports(
    interpreters: Sequence[Interpreter],
    packages: Sequence[str],
    *,
    worktree: Path,
    checkout: Path,
    env: Mapping[str, str],
) -> list[OutsideImport]:
    """Where each interpreter finds a package that is not the worktree's copy."""
    checkout = checkout.resolve()
    worktree = worktree.resolve()
    found = []
    for interpreter in interpreters:
        argv = [str(interpreter.python), "-c", _PROBE, interpreter.mode]
        try:
            done = run_captured(
                [*argv, *packages],
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


def _shebang(path: Path) -> Path | None:
    """The python a script's ``#!`` line names, if it names one."""
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
    if words and Path(words[0]).name.startswith("python"):
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
