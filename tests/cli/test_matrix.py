"""``outloop matrix``: the loops as JSON for ``strategy.matrix``, through the real CLI."""

from __future__ import annotations

import json

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli


def test_matrix_lists_every_loop(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {
            ".outloop/client-a.yml": loop_yaml(
                agent_cmd("counter_agent.py"), counter_goal(1), description="Client A"
            ),
            ".outloop/client-b.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1)),
        }
    )
    done = run_cli(repo, "matrix")
    assert done.returncode == 0, done.stderr
    # one line, so `echo "matrix=$(outloop matrix)" >> "$GITHUB_OUTPUT"` works
    assert done.stdout.count("\n") == 1
    assert json.loads(done.stdout) == {
        "include": [
            {"loop": "client-a", "goal": "run", "agent": "command", "description": "Client A"},
            {"loop": "client-b", "goal": "run", "agent": "command", "description": "test loop"},
        ]
    }
    only = json.loads(run_cli(repo, "matrix", "client-b", check=True).stdout)
    assert [e["loop"] for e in only["include"]] == ["client-b"]


def test_matrix_refuses_a_broken_loop(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {
            ".outloop/good.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1)),
            ".outloop/bad.yml": "agent:\n  preset: claude\ngoal:\n  run: x\nlimits:\n  max_iteration: 3\n",
        }
    )
    done = run_cli(repo, "matrix")
    assert done.returncode == 2
    assert "bad.yml" in done.stderr and "max_iteration" in done.stderr
    assert done.stdout == ""


def test_matrix_without_loops_or_with_an_unknown_name(make_repo: RepoFactory) -> None:
    repo = make_repo({"a.txt": "x"})
    done = run_cli(repo, "matrix")
    assert done.returncode == 2 and "no loops" in done.stderr
    repo2 = make_repo(
        {".outloop/one.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    done = run_cli(repo2, "matrix", "two")
    assert done.returncode == 2 and "no loop `two`" in done.stderr and "one" in done.stderr


def test_more_loops_than_a_matrix_takes(make_repo: RepoFactory) -> None:
    one = loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))
    repo = make_repo({f".outloop/client-{i:03d}.yml": one for i in range(257)})
    done = run_cli(repo, "matrix")
    assert done.returncode == 2
    assert "257 loops" in done.stderr and "256" in done.stderr
    some = run_cli(repo, "matrix", "client-000", "client-001", check=True)
    assert len(json.loads(some.stdout)["include"]) == 2
