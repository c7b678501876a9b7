"""Generated workflows, run the way GitHub would: the job's `if:`, then outloop's action.

``outloop workflow`` writes the file; the job condition is evaluated over a
synthetic event payload by a small evaluator of GitHub's expression syntax,
and the outloop step goes through the composite-action runner of
``test_action.py`` with ``GITHUB_EVENT_PATH`` pointing at that payload.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RepoFactory, git
from tests.e2e.test_action import MiniRunner
from tests.e2e.test_triggered_run import HOSTILE_BODY, issue_payload
from tests.support.e2e import agent_cmd, loop_yaml, run_cli

ACTION = "octo/outloop@0123456789abcdef0123456789abcdef01234567"
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||[(),!])|(?P<name>[A-Za-z_][\w.-]*))"
)


def github_if(expr: str, context: dict[str, Any]) -> bool:
    """GitHub's expression syntax, as far as the generated conditions use it."""
    python: list[str] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match and match.end() > pos, f"cannot read {expr[pos:]!r}"
        pos = match.end()
        if match["str"] is not None:
            python.append(repr(match["str"][1:-1].replace("''", "'")))
        elif match["op"] is not None:
            python.append({"&&": " and ", "||": " or ", "!": " not "}.get(match["op"], match["op"]))
        elif match["name"] in ("contains", "fromJSON"):
            python.append(match["name"])
        else:
            value: Any = context
            for part in match["name"].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            python.append(repr(value))
    helpers = {
        "contains": lambda seq, item: isinstance(seq, (list, str)) and item in seq,
        "fromJSON": json.loads,
    }
    return bool(eval("".join(python), {"__builtins__": {}}, helpers))


def compiled(repo: Path) -> dict[str, Any]:
    run_cli(repo, "workflow", "fix", "--write", "--action", ACTION, check=True)
    data = yaml.safe_load((repo / ".github/workflows/outloop-fix.yml").read_text())
    data["on"] = data.pop(True)
    assert isinstance(data, dict)
    return data


def run_outloop_step(
    workflow: dict[str, Any], repo: Path, tmp: Path, payload: dict[str, Any], event: str
) -> Any:
    (job,) = workflow["jobs"].values()
    context = {"github": {"event_name": event, "event": payload, "repository": "octo/widgets"}}
    if not github_if(job["if"], context):
        return None
    (step,) = [s for s in job["steps"] if s.get("name") == "Run the loop"]
    assert step["uses"] == ACTION
    # the workflow's own expressions in `with:`: the repository variable holds no policy here
    inputs = {k: str(v).replace("${{ vars.OUTLOOP_POLICY }}", "") for k, v in step["with"].items()}
    path = tmp / "event.json"
    path.write_text(json.dumps(payload))
    runner = MiniRunner(repo, tmp, env={"GITHUB_EVENT_PATH": str(path), "GITHUB_EVENT_NAME": event})
    return runner.run(inputs)


def event_repo(make_repo: RepoFactory, on: dict[str, Any]) -> Path:
    goal = f"{sys.executable} -c \"import pathlib,sys; sys.exit(0 if pathlib.Path('counter.txt').exists() else 1)\""
    return make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("event_agent.py", "{prompt_file}", "{event_file}"), goal, on=on
            )
        }
    )


def test_a_labelled_issue_runs_the_loop_with_its_text_as_data(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = event_repo(make_repo, {"issues": {"labels": ["outloop"]}})
    workflow = compiled(repo)
    marker = tmp_path / "pwned"
    result = run_outloop_step(workflow, repo, tmp_path, issue_payload(marker), "issues")
    assert result is not None and not result.failed, "\n".join(result.log)
    assert result.outputs["result"] == "goal_met"
    assert not marker.exists()
    prompt = git(repo, "show", f"{result.outputs['branch']}:seen_prompt.txt")
    assert json.dumps(HOSTILE_BODY.format(marker=marker)) in prompt
    assert "(untrusted data)" in prompt


def test_another_label_does_not_start_the_job(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo = event_repo(make_repo, {"issues": {"labels": ["outloop"]}})
    workflow = compiled(repo)
    payload = issue_payload(tmp_path / "m", label="bug")
    assert run_outloop_step(workflow, repo, tmp_path, payload, "issues") is None
    assert run_outloop_step(workflow, repo, tmp_path, {"inputs": {}}, "workflow_dispatch")


@pytest.mark.parametrize(
    ("conclusion", "event", "head_repo", "runs"),
    [
        ("failure", "push", "octo/widgets", True),
        ("success", "push", "octo/widgets", False),
        # a fork's pull request failing CI never starts a privileged run
        ("failure", "pull_request", "mallory/widgets", False),
        ("failure", "push", "mallory/widgets", False),
    ],
)
def test_only_a_failed_push_run_of_this_repository_starts_ci_failed(
    make_repo: RepoFactory,
    tmp_path: Path,
    conclusion: str,
    event: str,
    head_repo: str,
    runs: bool,
) -> None:
    repo = event_repo(make_repo, {"ci_failed": {"branches": ["main"], "workflows": ["CI"]}})
    workflow = compiled(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    payload = {
        "action": "completed",
        "workflow_run": {
            "id": 7,
            "name": "CI",
            "conclusion": conclusion,
            "event": event,
            "head_sha": head,
            "head_branch": "main",
            "head_repository": {"full_name": head_repo},
            "html_url": "https://github.com/octo/widgets/actions/runs/7",
        },
    }
    result = run_outloop_step(workflow, repo, tmp_path, payload, "workflow_run")
    assert (result is not None) == runs
    if result is not None:
        assert result.outputs["result"] == "goal_met", "\n".join(result.log)
        record = json.loads(Path(result.outputs["audit"]).with_name("run.json").read_text())
        assert record["trigger"]["kind"] == "ci_failed"
        assert record["base_commit"] == head


def test_a_scheduled_workflow_run_records_its_fire_time(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = event_repo(make_repo, {"schedule": ["@hourly"], "manual": False})
    workflow = compiled(repo)
    assert workflow["on"]["schedule"] == [{"cron": "0 * * * *"}]
    result = run_outloop_step(workflow, repo, tmp_path, {"schedule": "0 * * * *"}, "schedule")
    assert result is not None and result.outputs["result"] == "goal_met", "\n".join(result.log)
    record = json.loads(Path(result.outputs["audit"]).with_name("run.json").read_text())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", record["trigger"]["fire_time"])
    # a manual start is not in this loop's `on:`: the job does not run
    assert run_outloop_step(workflow, repo, tmp_path, {"inputs": {}}, "workflow_dispatch") is None
