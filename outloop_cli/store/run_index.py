"""The machine-wide index of runs: ``$XDG_STATE_HOME/outloop/index/<run-id>.json``.

A run's record lives in its repository's git dir; the index only says where
to find it, so a run can be named from any directory and ``status --all``
can list every repository's runs. One small file per run, written
atomically when the run starts (and again when it is resumed): no file is
shared between runs, so two runners never race on it and a crash leaves
either the old entry or the new one.

Nothing live is cached here. What a run is doing is read from its own
``run.json`` and its lock each time, so an entry never goes stale: a runner
killed with ``kill -9`` shows as crashed (its lock is free), a deleted
repository or run directory shows as gone, and a damaged entry is listed
as unreadable instead of raising.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outloop_cli.errors import UsageError
from outloop_cli.paths import state_home
from outloop_cli.store.atomic import atomic_write_json
from outloop_cli.store.runs import RunPaths, RunStore
from outloop_cli.timefmt import now_iso

INDEX_VERSION = 1
_SUFFIX = ".json"
# how many candidates an ambiguous or unknown run ref's hint names
_SHOWN = 5


def index_dir() -> Path:
    return state_home() / "index"


@dataclass(frozen=True)
class IndexEntry:
    """Where one run lives; ``problem`` is set (and the paths may be empty) when unreadable."""

    run_id: str
    repo_root: Path
    common_dir: Path
    run_dir: Path
    loop: str
    workspace: str | None
    started_at: str
    # the entry's own file, for messages and for `forget`
    file: Path
    problem: str | None = None

    @property
    def readable(self) -> bool:
        return self.problem is None

    @property
    def store(self) -> RunStore:
        return RunStore(self.common_dir)

    @property
    def paths(self) -> RunPaths:
        # derived from the git dir, as every command derives it; `run_dir` is for people
        return self.store.paths(self.run_id)

    def gone_reason(self) -> str | None:
        """Why the run can no longer be read where the index says it is, or None."""
        if not self.readable:
            return None
        if not self.common_dir.is_dir():
            return f"its repository's git dir {self.common_dir} no longer exists"
        if not self.paths.run_json.is_file():
            return f"its run directory {self.paths.root} no longer exists"
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "repo_root": str(self.repo_root),
            "common_dir": str(self.common_dir),
            "run_dir": str(self.run_dir),
            "loop": self.loop,
            "workspace": self.workspace,
            "started_at": self.started_at,
            "index_file": str(self.file),
            "problem": self.problem,
        }


def register_run(
    *,
    run_id: str,
    repo_root: Path,
    common_dir: Path,
    loop: str,
    workspace: str | None,
    started_at: str,
) -> Path:
    """Write (or rewrite, on resume) the run's entry; returns the entry's file.

    Raises OSError when the state directory cannot be written; the engine
    treats that as a warning, since the run itself does not need the index.
    """
    common = common_dir.resolve()
    path = _entry_file(run_id)
    atomic_write_json(
        path,
        {
            "version": INDEX_VERSION,
            "run_id": run_id,
            "repo_root": str(repo_root.resolve()),
            "common_dir": str(common),
            "run_dir": str(RunStore(common).paths(run_id).root),
            "loop": loop,
            "workspace": workspace,
            "started_at": started_at,
            "registered_at": now_iso(),
        },
    )
    return path


def forget_run(run_id: str, *, common_dir: Path | None = None) -> bool:
    """Drop a run's entry (its record was deleted on purpose); True when there was one.

    With ``common_dir``, only an entry of that repository's run is dropped: the
    same id in another repository (a copied one) keeps its entry.
    """
    path = _entry_file(run_id)
    if common_dir is not None:
        entry = read_entry(path)
        if entry.readable and entry.common_dir != common_dir.resolve():
            return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def list_index() -> list[IndexEntry]:
    """Every entry, oldest first; never raises for a damaged entry (it is listed unreadable)."""
    root = index_dir()
    try:
        files = [
            p for p in root.iterdir() if p.name.endswith(_SUFFIX) and not p.name.startswith(".")
        ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        return [_unreadable(root / "*", f"cannot list the run index {root}: {exc.strerror}")]
    entries = [read_entry(path) for path in files]
    return sorted(entries, key=lambda e: (e.run_id, str(e.file)))


def read_entry(path: Path) -> IndexEntry:
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        return _unreadable(path, f"cannot read {path}: {exc.strerror}")
    except ValueError as exc:
        return _unreadable(path, f"{path} is not valid JSON ({exc})")
    try:
        return _from_dict(data, path)
    except (KeyError, TypeError, ValueError) as exc:
        return _unreadable(path, f"{path} is not a run index entry ({type(exc).__name__}: {exc})")


def find_in_index(run_ref: str) -> IndexEntry:
    """The entry of the run ``run_ref`` names: its full id, or a unique prefix or suffix."""
    ref = run_ref.strip()
    if not ref:
        raise UsageError("no run given", hint="`outloop status --all` lists every run")
    entries = list_index()
    matches = _matching(entries, ref)
    if len(matches) == 1:
        entry = matches[0]
        if entry.problem is not None:
            raise UsageError(
                f"the index entry of run {entry.run_id} is unreadable: {entry.problem}",
                hint="run outloop from that run's repository, or delete the damaged entry",
            )
        return entry
    if not matches:
        raise UsageError(
            f"no run matches `{ref}` here or in the run index",
            hint=_recent_hint(entries),
        )
    shown = ", ".join(f"{e.run_id} ({e.repo_root})" for e in matches[-_SHOWN:])
    raise UsageError(f"`{ref}` matches {len(matches)} runs", hint=f"give more of it: {shown}")


def match_index(run_ref: str) -> list[IndexEntry]:
    """The entries ``run_ref`` names (empty, one, or several when it is ambiguous)."""
    ref = run_ref.strip()
    return _matching(list_index(), ref) if ref else []


def _matching(entries: list[IndexEntry], ref: str) -> list[IndexEntry]:
    exact = [e for e in entries if e.run_id == ref]
    return exact or [e for e in entries if e.run_id.startswith(ref) or e.run_id.endswith(ref)]


def _recent_hint(entries: list[IndexEntry]) -> str:
    if not entries:
        return "no run is in the index yet; `outloop run` registers each run it starts"
    recent = ", ".join(e.run_id for e in entries[-_SHOWN:][::-1])
    return f"recent runs: {recent}; `outloop status --all` lists every run"


def _entry_file(run_id: str) -> Path:
    # a run id is outloop's own (`20261122-081500-3fa9c2`); refuse anything that could
    # leave the index directory, whatever a damaged record says
    if not run_id or "/" in run_id or run_id.startswith(".") or "\x00" in run_id:
        raise ValueError(f"not a run id: {run_id!r}")
    return index_dir() / f"{run_id}{_SUFFIX}"


def _from_dict(data: Any, path: Path) -> IndexEntry:
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    run_id = _text(data, "run_id")
    if f"{run_id}{_SUFFIX}" != path.name:
        raise ValueError(f"it names run {run_id!r}, not the one of its file name")
    workspace = data.get("workspace")
    if workspace is not None and not isinstance(workspace, str):
        raise TypeError("workspace is not a string")
    return IndexEntry(
        run_id=run_id,
        repo_root=_absolute(data, "repo_root"),
        common_dir=_absolute(data, "common_dir"),
        run_dir=_absolute(data, "run_dir"),
        loop=_text(data, "loop"),
        workspace=workspace,
        started_at=_text(data, "started_at"),
        file=path,
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key} is not a non-empty string")
    return value


def _absolute(data: dict[str, Any], key: str) -> Path:
    path = Path(_text(data, key))
    if not path.is_absolute():
        raise ValueError(f"{key} is not an absolute path")
    return path


def _unreadable(path: Path, why: str) -> IndexEntry:
    run_id = path.name[: -len(_SUFFIX)] if path.name.endswith(_SUFFIX) else path.name
    empty = Path()
    return IndexEntry(
        run_id=run_id,
        repo_root=empty,
        common_dir=empty,
        run_dir=empty,
        loop="?",
        workspace=None,
        started_at="",
        file=path,
        problem=why,
    )
