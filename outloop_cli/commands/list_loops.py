"""``outloop list``: the loops in the working tree, each with its agent, goal and problems."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.config.loader import display_path, load_loop_file
from outloop_cli.config.source import find_loop_files
from outloop_cli.errors import ConfigError
from outloop_cli.git.repo import discover


@dataclass(frozen=True)
class LoopSummary:
    """One row of ``outloop list``: a loop file's agent, goal and number of problems."""

    name: str
    path: str
    agent: str
    goal: str
    description: str | None
    problems: int


def list_loops(cwd: Path) -> list[LoopSummary]:
    root = discover(cwd).root
    summaries = []
    for path in find_loop_files(root):
        try:
            config = load_loop_file(path, repo_root=root)
        except ConfigError as exc:
            summaries.append(
                LoopSummary(
                    path.stem,
                    display_path(path, root),
                    "?",
                    "?",
                    None,
                    problems=len(exc.problems),
                )
            )
            continue
        agent = config.agent.preset
        if config.agent.preset == "command" and config.agent.command:
            agent = "command: " + " ".join(config.agent.command)
        goal = (
            config.goal.run
            if config.goal.run is not None
            else f"ci ({config.goal.ci.provider if config.goal.ci else '?'})"
        )
        summaries.append(
            LoopSummary(config.name, config.path, agent, goal, config.description, problems=0)
        )
    return summaries
