"""outloop writes the shared part of its split index into the agent's git dir: never through
a link the agent left there.

The agent may write its own git dir. After each commit outloop gives it the
shared index file that its copy of the index names (``rundirs.sync_shared_indexes``).
The agent of a real ``outloop run`` replaces that file with a link to a file
outside the sandbox; the next commit must replace the link, not write through
it. The control takes the protection out of the same run (the copy written by
a plain open, which follows links) and shows the victim overwritten.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli, run_cli_patched

VICTIM_TEXT = "the user's own file\n"

# the copy written as a naive writer would: opened by name, through whatever is there
_FOLLOWING_LINKS = (
    "import outloop_cli.git.rundirs as rundirs\n"
    "from pathlib import Path\n"
    "def _write(path, data, *, durable=True, mode=None):\n"
    "    Path(path).write_bytes(data)\n"
    "rundirs.atomic_write_bytes = _write\n"
)


def _setup(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, Path]:
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text(VICTIM_TEXT)
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("shared_index_linker_agent.py", str(victim)),
                counter_goal(99),
                sandbox="bwrap",
            )
        }
    )
    return repo, victim


def _agent_git_dirs(repo: Path) -> list[Path]:
    return sorted((repo / ".git" / "outloop" / "runs").glob("*/agent.git"))


def test_a_link_at_the_shared_index_is_replaced_not_written_through(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, victim = _setup(make_repo, tmp_path)

    done = run_cli(repo, "run", "fix", "--max-iterations", "3")

    assert done.returncode == 1, done.stderr  # max_iterations, as the goal never holds
    assert victim.read_text() == VICTIM_TEXT
    (agent,) = _agent_git_dirs(repo)
    shared = sorted(agent.glob("sharedindex.*"))
    assert shared and not any(p.is_symlink() for p in shared)


def test_control_a_copy_that_follows_links_overwrites_the_victim(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, victim = _setup(make_repo, tmp_path)

    done = run_cli_patched(repo, _FOLLOWING_LINKS, "run", "fix", "--max-iterations", "3")

    assert done.returncode == 1, done.stderr
    # the index's shared part, written as the user into a file the sandbox never showed
    assert victim.read_bytes().startswith(b"DIRC")
