"""Finding the run a command names: in the repository at cwd first, then in the run index.

So ``outloop show|stop|resume|report RUN`` work from any directory, also
from outside every git repository: a run id (or a unique prefix or suffix of
one) that the repository here does not have is looked up in the machine-wide
index (``store/run_index.py``), which says which repository holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import OutloopError, UsageError
from outloop_cli.git.repo import RepoInfo, discover
from outloop_cli.store.run_index import find_in_index, match_index
from outloop_cli.store.runs import RunPaths, RunStore

# how many of this repository's runs an "unknown run" hint names
RECENT_RUNS_SHOWN = 5


@dataclass(frozen=True)
class OpenedRun:
    """The run a command named: its store, id and paths, and the repository that holds it."""

    store: RunStore
    run_id: str
    paths: RunPaths
    # the repository that holds the run (not necessarily the one at cwd)
    repo: RepoInfo
    # True when the repository at cwd did not have it and the index said where it is
    from_index: bool = False


def open_run(cwd: Path, run_ref: str) -> OpenedRun:
    """The run ``run_ref`` names; raises UsageError (with a hint naming runs) when none does."""
    local = _repo_at(cwd)
    if local is not None:
        store = RunStore(local.common_dir)
        matches = _local_matches(store, run_ref)
        if len(matches) == 1:
            return OpenedRun(store, matches[0], store.paths(matches[0]), local)
        if matches:
            # ambiguous here is an error here, not a reason to look elsewhere
            shown = ", ".join(matches[-RECENT_RUNS_SHOWN:])
            raise UsageError(
                f"`{run_ref}` matches {len(matches)} runs",
                hint=f"give more of the run id; it matches {shown}",
            )
    if not match_index(run_ref):
        if local is not None:
            raise UsageError(
                f"no run matches `{run_ref}`", hint=_local_hint(RunStore(local.common_dir))
            )
        raise UsageError(
            f"no run matches `{run_ref}` in the run index, "
            f"and {cwd} is not inside a git repository",
            hint="`outloop status --all` lists every run on this machine; "
            "or run outloop from the run's repository",
        )
    entry = find_in_index(run_ref)
    gone = entry.gone_reason()
    if gone is not None:
        raise UsageError(
            f"run {entry.run_id} (repository {entry.repo_root}) is gone: {gone}",
            hint="it was deleted with its repository or by `outloop clean`; "
            "`outloop status --all` lists the runs there are",
        )
    info = RepoInfo(root=entry.repo_root, common_dir=entry.common_dir)
    return OpenedRun(entry.store, entry.run_id, entry.paths, info, from_index=True)


def _repo_at(cwd: Path) -> RepoInfo | None:
    try:
        return discover(cwd)
    except OutloopError:
        return None


def _local_matches(store: RunStore, run_ref: str) -> list[str]:
    """This repository's runs ``run_ref`` names: its full id, or a prefix or suffix of them."""
    ids = store.run_ids()
    if run_ref in ids:
        return [run_ref]
    return [i for i in ids if i.startswith(run_ref) or i.endswith(run_ref)] if run_ref else []


def _local_hint(store: RunStore) -> str:
    """Names this repository's recent runs, as a user who mistyped one wants to see."""
    ids = store.run_ids()
    every = "`outloop status --all` lists every run on this machine"
    if not ids:
        return f"this repository has no runs yet; start one with `outloop run`; {every}"
    recent = ids[-RECENT_RUNS_SHOWN:][::-1]
    more = len(ids) - len(recent)
    tail = f"; {more} older in `outloop status`" if more > 0 else ""
    return (
        "recent runs: " + ", ".join(_describe(store, run_id) for run_id in recent) + tail + "; "
        f"{every}"
    )


def _describe(store: RunStore, run_id: str) -> str:
    try:
        record = store.load(run_id)
    except OutloopError:
        # a damaged record still has an id worth naming
        return f"{run_id} (unreadable)"
    reason = record.stop_reason.value if record.stop_reason else record.state.value
    return f"{run_id} ({record.loop}, {reason})"
