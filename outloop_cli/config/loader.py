"""Read loop files: YAML text → node tree → validated :class:`LoopConfig`.

The YAML is *composed*, not loaded, so every value keeps its line and column
and every problem can point at the exact spot. All problems of a file are
collected before anything is reported.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, ScalarNode

from outloop_cli.config import values as v
from outloop_cli.config.loop_schema import LOOP, key_index
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.preset_credentials import (
    check_completed,
    check_credentials,
    complete_credentials,
)
from outloop_cli.config.spec import INVALID, Context
from outloop_cli.errors import ConfigError, Problem

LOOP_SUFFIXES = (".yml", ".yaml")


def _yaml_problem(exc: yaml.YAMLError, file: str, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        # raised before parsing starts: it has a position in the text, not a mark
        position = int(exc.position)
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Problem(
            file,
            f"invalid YAML: the control character U+{ord(char):04X} is not allowed",
            line,
            col,
            "remove it; inside a double-quoted string write it as an escape such as \\x07",
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}"
    if context and "a single document" in context:
        message = "invalid YAML: a second document starts here, but a loop file holds one"
    elif context and context_mark is not None and mark is not None and context_mark != mark:
        # e.g. an unclosed `[`: the error shows where parsing failed; say where it began
        message += f" ({context} that starts at line {context_mark.line + 1})"
    elif context:
        message = f"invalid YAML: {context}, {problem}"
    hint = "check indentation and quoting near this spot"
    if "found character '\\t'" in message:
        hint = "YAML does not allow tabs for indentation; use spaces"
    elif "a single document" in message:
        hint = "a loop file holds one document; remove the `---` and what follows it"
    if mark is None:
        return Problem(file, message, hint=hint)
    return Problem(file, message, mark.line + 1, mark.column + 1, hint)


def _position(problem: Problem) -> tuple[int, int]:
    return (problem.line or 0, problem.col or 0)


def check_loop_text(text: str, *, file: str, name: str) -> tuple[LoopConfig | None, list[Problem]]:
    """Validate one loop file's text; the config when it is valid, and every problem."""
    problems: list[Problem] = []
    name_problem = v.loop_name_problem(name)
    if name_problem:
        problems.append(Problem(file, name_problem, hint="rename the file"))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return None, [*problems, _yaml_problem(exc, file, text)]
    except RecursionError:
        # PyYAML composes nested collections recursively; [[[[... a thousand deep
        too_deep = Problem(
            file,
            "invalid YAML: collections are nested too deeply to read",
            1,
            1,
            "a loop file needs at most four levels; look for runaway [ or {",
        )
        return None, [*problems, too_deep]
    if node is None or (isinstance(node, ScalarNode) and node.value == ""):
        problems.append(
            Problem(
                file,
                "the loop file is empty",
                1,
                1,
                "a loop needs at least `agent:` and `goal:`; `outloop init` writes a starter",
            )
        )
        return None, problems
    if not isinstance(node, MappingNode):
        mark = node.start_mark
        problems.append(
            Problem(
                file,
                "a loop file must be a mapping of keys (agent, goal, limits, ...)",
                mark.line + 1,
                mark.column + 1,
                "`outloop init` writes a commented starter file",
            )
        )
        return None, problems
    ctx = Context(file=file, name=name, key_index=key_index)
    config = LOOP.check(node, (), ctx, extra={"name": name, "path": file})
    check_credentials(node, ctx)
    # in file order: rules between keys are checked after the keys themselves
    problems.extend(sorted(ctx.problems, key=_position))
    if problems or config is INVALID:
        return None, problems
    assert isinstance(config, LoopConfig)
    config = complete_credentials(config, node)
    check_completed(config, node, ctx)
    if ctx.problems:
        return None, sorted(ctx.problems, key=_position)
    return config, []


def load_loop_text(text: str, *, file: str, name: str, path: str | None = None) -> LoopConfig:
    """Like :func:`check_loop_text`, raising :class:`ConfigError` with every problem."""
    config, problems = check_loop_text(text, file=file, name=name)
    if config is None:
        raise ConfigError(problems)
    if path is not None and path != config.path:
        config = _with_path(config, path)
    return config


def _with_path(config: LoopConfig, path: str) -> LoopConfig:
    import dataclasses

    return dataclasses.replace(config, path=path)


def display_path(path: Path, repo_root: Path | None) -> str:
    """The path as a user reads it in messages: relative to the repo when inside it."""
    if repo_root is not None:
        try:
            return path.resolve().relative_to(repo_root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def _decode(data: bytes, file: str) -> tuple[str | None, Problem | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        return None, Problem(
            file,
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x})",
            line,
            col,
            "save the file as UTF-8",
        )


def check_loop_bytes(
    data: bytes, *, file: str, name: str
) -> tuple[LoopConfig | None, list[Problem]]:
    """Like :func:`check_loop_text` for a file's raw content (e.g. a blob at a commit)."""
    text, problem = _decode(data, file)
    if text is None:
        assert problem is not None
        return None, [problem]
    return check_loop_text(text, file=file, name=name)


def load_loop_bytes(data: bytes, *, file: str, name: str, path: str | None = None) -> LoopConfig:
    """Like :func:`load_loop_text` for raw content: bad UTF-8 is a located problem too."""
    text, problem = _decode(data, file)
    if text is None:
        assert problem is not None
        raise ConfigError([problem])
    return load_loop_text(text, file=file, name=name, path=path)


# A loop file is a few KB; anything this big is the wrong file, and YAML parsing it is slow.
MAX_LOOP_FILE_SIZE = 1024 * 1024


def _read(path: Path, shown: str) -> tuple[str | None, Problem | None]:
    try:
        info = path.stat()
        # a FIFO or a device (`validate /dev/stdin`) would block or never end
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            return None, Problem(shown, "is not a regular file", hint="name a .yml file")
        if info.st_size > MAX_LOOP_FILE_SIZE:
            return None, Problem(
                shown,
                f"is {info.st_size // 1024} KiB; a loop file is at most 1 MiB",
                hint="is this the right file?",
            )
        data = path.read_bytes()
    except FileNotFoundError:
        return None, Problem(shown, "no such file", hint="`outloop list` shows the loops")
    except IsADirectoryError:
        return None, Problem(
            shown, "is a directory, not a loop file", hint="name a .yml file, e.g. .outloop/fix.yml"
        )
    except OSError as exc:
        return None, Problem(
            shown, f"cannot read: {exc.strerror}", hint="check the file's permissions"
        )
    return _decode(data, shown)


def check_loop_file(
    path: Path, *, repo_root: Path | None
) -> tuple[LoopConfig | None, list[Problem]]:
    shown = display_path(path, repo_root)
    text, problem = _read(path, shown)
    if text is None:
        assert problem is not None
        return None, [problem]
    if path.suffix not in LOOP_SUFFIXES:
        return None, [
            Problem(shown, "a loop file must end in .yml or .yaml", hint="rename the file")
        ]
    return check_loop_text(text, file=shown, name=path.stem)


def load_loop_file(path: Path, *, repo_root: Path | None) -> LoopConfig:
    config, problems = check_loop_file(path, repo_root=repo_root)
    if config is None:
        raise ConfigError(problems)
    return config


def check_loop_files(
    paths: Iterable[Path], *, repo_root: Path | None
) -> tuple[list[tuple[Path, LoopConfig]], list[Problem]]:
    """Each file that parsed with its config, and every problem of every file, in order."""
    configs: list[tuple[Path, LoopConfig]] = []
    problems: list[Problem] = []
    names: dict[str, str] = {}
    for path in paths:
        config, found = check_loop_file(path, repo_root=repo_root)
        if config is not None:
            configs.append((path, config))
        problems.extend(found)
        shown = display_path(path, repo_root)
        if path.stem in names and names[path.stem] != shown:
            problems.append(
                Problem(
                    shown,
                    f"loop name {path.stem!r} is also used by {names[path.stem]}",
                    hint="loop names come from file names and must be unique; rename one",
                )
            )
        names.setdefault(path.stem, shown)
    return configs, problems
