"""Named lists of repositories, for ``outloop run LOOP --repo @NAME``.

Kept in ``$XDG_CONFIG_HOME/outloop/repos.yml`` (``$OUTLOOP_REPOS`` to point
elsewhere): next to the policy file, outside every repository, because which
checkouts a machine runs loops in is the operator's business, not any one
repository's. It is not part of the policy: a group only says where to run,
never what a run may use; the policy still decides that per repository.

    groups:
      clients: ["~/clients/*", /srv/git/acme-crm]
      nightly: [~/src/api, ~/src/web]

Declared with the same framework as the loop and policy files, so every
problem carries file:line:col and the JSON Schema comes from this declaration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import ScalarNode

from outloop_cli.config import values as v
from outloop_cli.config.spec import INVALID, Context, JSONSchema, document_schema
from outloop_cli.config.spec_collections import Field, ListOf, MapOf, Obj
from outloop_cli.config.spec_scalars import Str
from outloop_cli.errors import ConfigError, Problem, UsageError
from outloop_cli.paths import config_home

REPOS_ENV = "OUTLOOP_REPOS"
REPOS_HINT = (
    "write `groups:` with one list of repository paths per name, e.g. clients: [~/clients/*]"
)


def check_repo_path_pattern(text: str) -> str:
    """An absolute path (``~/`` allowed), which may hold glob patterns (``*``, ``?``, ``[…]``)."""
    if not text.strip() or text != text.strip():
        raise v.BadValue(f"{text!r} has leading or trailing spaces, or is empty")
    if text.startswith("~") and text != "~" and not text.startswith("~/"):
        raise v.BadValue(f"{text!r}: only `~/` (your home) is expanded", "write the full path")
    if not text.startswith(("/", "~")):
        raise v.BadValue(
            f"{text!r} is not an absolute path",
            "a group is used from any directory, so write /… or ~/…",
        )
    if "\x00" in text:
        raise v.BadValue("a path cannot contain a NUL character")
    return text


_GROUP_NAME = Str(
    "a group name",
    v.CREDENTIAL_NAME_PATTERN,
    hint="use lowercase letters, digits, '_' and '-', e.g. clients",
)


@dataclass(frozen=True)
class RepoGroups:
    """The repository groups file (``repos.yml``): repository path patterns by group name."""

    path: str
    # (name, path patterns), sorted by name
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def get(self, name: str) -> tuple[str, ...] | None:
        return next((repos for key, repos in self.groups if key == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.groups)


REPO_GROUPS = Obj(
    RepoGroups,
    (
        Field(
            "groups",
            MapOf(
                _GROUP_NAME,
                ListOf(
                    Str(
                        "a repository path",
                        r"(/|~/).*|~",
                        check_text=check_repo_path_pattern,
                    ),
                    min_items=1,
                    unique=True,
                    empty_hint="a group needs at least one repository path",
                ),
                pairs=True,
            ),
            "Groups by name: each a list of absolute repository paths (`~/` and glob "
            "patterns such as `~/clients/*` allowed), used as `outloop run LOOP --repo @NAME`.",
            required=True,
            example='{clients: ["~/clients/*", /srv/git/acme-crm]}',
        ),
    ),
    unknown_hint="groups go under `groups:`",
)

REPOS_SCHEMA_ID = "https://outloop.dev/schema/repos.json"


def json_schema() -> JSONSchema:
    return document_schema(
        REPO_GROUPS,
        schema_id=REPOS_SCHEMA_ID,
        title="outloop repository groups (~/.config/outloop/repos.yml)",
        description="Named lists of repositories that `outloop run --repo @NAME` runs a loop in.",
    )


def default_repos_path() -> Path:
    env = os.environ.get(REPOS_ENV)
    if env:
        return Path(env).expanduser()
    return config_home() / "repos.yml"


def check_repo_groups_text(text: str, *, file: str) -> tuple[RepoGroups | None, list[Problem]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            return None, [Problem(file, f"invalid YAML: {problem}")]
        return None, [
            Problem(
                file,
                f"invalid YAML: {problem}",
                mark.line + 1,
                mark.column + 1,
                "check indentation and quoting near this spot",
            )
        ]
    if node is None or (isinstance(node, ScalarNode) and node.value == ""):
        return None, [Problem(file, "the repository groups file is empty", 1, 1, REPOS_HINT)]
    ctx = Context(file=file)
    groups = REPO_GROUPS.check(node, (), ctx, extra={"path": file})
    if groups is INVALID or ctx.problems:
        return None, ctx.problems
    assert isinstance(groups, RepoGroups)
    return groups, []


def load_repo_groups(path: Path | None = None) -> RepoGroups:
    """Read and validate the groups file; ConfigError (exit 2, file:line:col) for any problem."""
    path = path or default_repos_path()
    shown = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"no repository groups file at {shown}",
            hint=f"create it ({REPOS_HINT}), or point ${REPOS_ENV} at one",
        ) from None
    except OSError as exc:
        raise ConfigError([Problem(shown, f"cannot read: {exc.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(shown, "not valid UTF-8", line)]) from None
    groups, problems = check_repo_groups_text(text, file=shown)
    if groups is None:
        raise ConfigError(problems)
    return groups


@dataclass(frozen=True)
class RepoTarget:
    """One repository a command was given: its path, or why there is none to run in."""

    # what the user wrote (`~/clients/*`, `@clients`), for messages
    given: str
    path: Path
    problem: str | None = None


def expand_repo_args(
    args: list[str], cwd: Path, *, groups_file: Path | None = None
) -> list[RepoTarget]:
    """The repositories ``--repo`` names, in order, each once.

    ``@NAME`` is a group of the groups file; ``~`` and glob patterns are
    expanded by outloop too (a quoted `'~/clients/*'` works like an unquoted
    one). A pattern keeps only the directories that are git checkouts (a
    stray file or folder next to the clients is not a failed repository); a
    plain path is taken as given, so a typo is reported for that repository.
    """
    import glob

    groups: RepoGroups | None = None
    targets: list[RepoTarget] = []
    seen: set[Path] = set()

    def add(target: RepoTarget) -> None:
        key = target.path.resolve() if target.problem is None else Path(f"\x00{target.given}")
        if key in seen:
            return
        seen.add(key)
        targets.append(target)

    for arg in args:
        if arg.startswith("@"):
            groups = groups or load_repo_groups(groups_file)
            name = arg[1:]
            patterns = groups.get(name)
            if patterns is None:
                known = ", ".join("@" + n for n in groups.names) or "none"
                raise UsageError(
                    f"no repository group `{name}` in {groups.path}",
                    hint=f"the groups there: {known}",
                )
        else:
            patterns = (arg,)
        for pattern in patterns:
            where = Path(pattern).expanduser()
            expanded = str(where if where.is_absolute() else cwd / where)
            if glob.has_magic(expanded):
                # an absolute pattern with magic anywhere in it: Path.glob takes relative ones only
                hits = sorted(glob.glob(expanded))  # noqa: PTH207
                repos = [Path(h) for h in hits if Path(h).is_dir() and (Path(h) / ".git").exists()]
                if not repos:
                    add(RepoTarget(pattern, Path(expanded), "matches no git checkout"))
                for repo in repos:
                    add(RepoTarget(pattern, repo))
            elif not Path(expanded).is_dir():
                add(RepoTarget(pattern, Path(expanded), f"{expanded} is not a directory"))
            else:
                add(RepoTarget(pattern, Path(expanded)))
    return targets
