"""``outloop workflow``: compile loops' ``on:`` into GitHub Actions workflow files, or check them.

Loops are read from the work tree (the files being edited, like ``validate``);
every loop is checked before any file is written, so a bad loop file writes
nothing. The pin of outloop's own action is given once with ``--action`` and
read back from the committed workflow after that, so regenerating keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.config.loader import load_loop_file
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.source import find_loop_files
from outloop_cli.errors import ConfigError, Problem, UsageError
from outloop_cli.git.repo import discover
from outloop_cli.store.atomic import atomic_write_text
from outloop_cli.triggers.workflow import (
    HEADER,
    WORKFLOW_DIR,
    ActionRef,
    action_from_workflow,
    compile_workflow,
    workflow_path,
)

_GENERATED_PREFIX = HEADER.split("{", 1)[0]


@dataclass(frozen=True)
class WorkflowFile:
    """One loop's generated workflow file: what it should hold, and how the one on disk compares."""

    loop: str
    # repo-relative, e.g. .github/workflows/outloop-fix.yml
    path: str
    # what the file should hold; None: a generated file no loop wants any more
    text: str | None
    # "up to date", "stale", "missing" or "orphaned"
    state: str

    @property
    def current(self) -> bool:
        return self.state == "up to date"


def _is_generated(text: str) -> bool:
    return text.startswith(_GENERATED_PREFIX)


def watched_workflows(root: Path) -> list[str]:
    """The names of the repository's own workflows (not outloop's), as workflow_run wants them."""
    import yaml

    names: list[str] = []
    folder = root / WORKFLOW_DIR
    if not folder.is_dir():
        return names
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        try:
            text = path.read_text("utf-8")
            data = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if _is_generated(text) or not isinstance(data, dict):
            continue
        name = data.get("name")
        names.append(name if isinstance(name, str) and name.strip() else path.name)
    return names


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _action_for(configs: Sequence[LoopConfig], root: Path, given: ActionRef | None) -> ActionRef:
    if given is not None:
        return given
    for config in configs:
        existing = _read(root / workflow_path(config.name))
        found = action_from_workflow(existing) if existing else None
        if found is not None:
            return found
    raise UsageError(
        "which outloop action should the workflows use?",
        hint="give it once, pinned: --action OWNER/outloop@<40-hex commit> --action-version v1.2.3 "
        "(or --action ./ when action.yml is in this repository); later runs keep that pin",
    )


def plan_workflows(
    cwd: Path,
    loops: Sequence[str],
    *,
    action: str | None = None,
    action_version: str | None = None,
    workspace: str = "default",
) -> tuple[Path, list[WorkflowFile]]:
    """What each loop's workflow file should hold, and how the file on disk compares."""
    root = discover(cwd).root
    files = find_loop_files(root)
    by_name = {path.stem: path for path in files}
    for wanted in loops:
        if wanted not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise UsageError(f"no loop `{wanted}` in .outloop/", hint=f"loops here: {known}")
    problems: list[Problem] = []
    configs: list[LoopConfig] = []
    for name in loops or sorted(by_name):
        try:
            config = load_loop_file(by_name[name], repo_root=root)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        # without `on:` a loop is started by hand only: a workflow just when asked for
        if loops or config.on is not None:
            configs.append(config)
    if problems:
        raise ConfigError(problems)
    given = ActionRef.parse(action, action_version) if action else None
    ref = _action_for(configs, root, given) if configs else None
    watched = watched_workflows(root)
    out: list[WorkflowFile] = []
    for config in configs:
        assert ref is not None
        text = compile_workflow(config, action=ref, workspace=workspace, watched_workflows=watched)
        path = workflow_path(config.name)
        existing = _read(root / path)
        state = "missing" if existing is None else "up to date" if existing == text else "stale"
        out.append(WorkflowFile(config.name, path, text, state))
    if not loops:
        kept = {f.path for f in out}
        folder = root / WORKFLOW_DIR
        generated = sorted(folder.glob("outloop-*.yml")) if folder.is_dir() else []
        for found in generated:
            relative = f"{WORKFLOW_DIR}/{found.name}"
            old = _read(found)
            if relative not in kept and old is not None and _is_generated(old):
                out.append(
                    WorkflowFile(found.stem.removeprefix("outloop-"), relative, None, "orphaned")
                )
    return root, out


def write_workflows(root: Path, files: Sequence[WorkflowFile]) -> list[WorkflowFile]:
    """Bring every file up to date; returns the ones that changed."""
    changed = []
    for file in files:
        if file.current:
            continue
        target = root / file.path
        if file.text is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, file.text)
        changed.append(file)
    return changed
