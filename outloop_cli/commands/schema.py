"""``outloop schema``: the loop file's JSON Schema, for editors and CI.

A loop file is committed, so the schema it names must resolve on every
teammate's and CI's clone: ``outloop init`` writes the schema to
``.outloop/schema.json`` beside the loops (committed with them) and the loop's
first line names it relative to itself (``$schema=schema.json``), which
yaml-language-server resolves from the file's own directory. No public URL
exists for a version of outloop, and a cache path is one machine's. The copy
is generated: ``outloop schema --write`` refreshes it after an upgrade and
``outloop schema --check`` fails CI when it is stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.config.loop_schema import json_schema
from outloop_cli.config.source import LOOP_DIR
from outloop_cli.errors import CouldNotRun
from outloop_cli.git.repo import discover
from outloop_cli.paths import cache_home
from outloop_cli.store.atomic import atomic_write_text

REPO_SCHEMA_NAME = "schema.json"


def schema_text(*, repos: bool = False) -> str:
    """The loop files' schema, or with ``repos`` the repo groups' (``repos.yml``)."""
    if repos:
        from outloop_cli.config.repo_groups import json_schema as repos_json_schema

        return json.dumps(repos_json_schema(), indent=2) + "\n"
    return json.dumps(json_schema(), indent=2) + "\n"


def schema_path(*, repos: bool = False) -> Path:
    """A file holding the schema, refreshed when it differs, for `# yaml-language-server: $schema=`.

    Raises :class:`CouldNotRun` when the cache directory cannot be written.
    """
    from outloop_cli import __version__

    kind = "repos" if repos else "loop"
    path = cache_home() / f"{kind}-schema-{__version__}.json"
    text = schema_text(repos=repos)
    try:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text, durable=False)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise CouldNotRun(
            f"cannot write the schema to {path}: {reason}",
            hint="set XDG_CACHE_HOME to a writable directory, or use `outloop schema > FILE`",
        ) from exc
    return path


@dataclass(frozen=True)
class RepoSchema:
    """The repository's committed ``.outloop/schema.json``, and whether it is this outloop's."""

    path: Path
    # "written" (new or refreshed), "current" (as this outloop writes it), "stale", "missing"
    state: str


def repo_schema_file(cwd: Path) -> Path:
    """``.outloop/schema.json`` at the top of the repository holding ``cwd``."""
    return discover(cwd).root / LOOP_DIR / REPO_SCHEMA_NAME


def write_repo_schema(cwd: Path) -> RepoSchema:
    """Write or refresh the repository's committed copy of the schema."""
    path = repo_schema_file(cwd)
    if _read(path) == schema_text():
        return RepoSchema(path, "current")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a file to commit, read by editors and CI like any source file
        atomic_write_text(path, schema_text(), mode=0o644)
    except OSError as exc:
        raise CouldNotRun(f"cannot write the schema to {path}: {exc.strerror}") from exc
    return RepoSchema(path, "written")


def check_repo_schema(cwd: Path) -> RepoSchema:
    """Whether the committed copy is the schema of this outloop."""
    path = repo_schema_file(cwd)
    found = _read(path)
    if found is None:
        return RepoSchema(path, "missing")
    return RepoSchema(path, "current" if found == schema_text() else "stale")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
