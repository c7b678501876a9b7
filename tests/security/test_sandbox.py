"""`sandbox: bwrap`: the agent runs in bubblewrap; what it can and cannot reach."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RepoFactory, git
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, only_run, run_cli


def _probe(repo: Path) -> dict[str, object]:
    done = run_cli(repo, "run", "fix", "--max-iterations", "1")
    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    log = repo / ".git/outloop/runs" / str(record["run_id"]) / "logs/iter-001-agent.log"
    # outloop may add its own lines after the agent's (e.g. about processes it killed)
    probe = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return dict(json.loads(probe[-1]))


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "canary-" + secrets.token_hex(16)
    # a secret in outloop's own environment, and a file in the user's home
    monkeypatch.setenv("OUTLOOP_SECRET_ACME_OPENAI", value)
    monkeypatch.setenv("SOME_TOKEN", value)
    (Path(os.environ["HOME"]) / ".netrc").write_text(f"machine x password {value}\n")
    return value


def test_bwrap_hides_other_processes_home_hooks_and_the_audit_log(
    make_repo: RepoFactory, canary: str
) -> None:
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("prober_agent.py", canary[::-1]), "false", sandbox="bwrap"
            )
        }
    )
    found = _probe(repo)

    assert found["proc_leaks"] == [], found
    assert found["visible_pids"] <= 4, found  # bwrap's init, the agent, its shell
    # only the mount points leading to the worktree (which lives under outloop's state dir)
    assert set(found["home_entries"] or []) <= {".local"}, found
    assert found["canary_in_env"] is False
    assert found["hook_written"] is False
    assert found["audit_writable"] is False
    assert found["worktree_writable"] is True
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()
    assert git(repo, "show", f"{only_run(repo)['branch']}:probe-ok.txt")


def test_without_a_sandbox_the_same_probe_sees_the_host(
    make_repo: RepoFactory, canary: str
) -> None:
    # the control: proves the probe can detect what the sandbox hides
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("prober_agent.py", canary[::-1]), "false", sandbox="none"
            )
        }
    )
    found = _probe(repo)

    assert found["home_entries"], found
    assert int(str(found["visible_pids"])) > 4
    assert found["proc_leaks"], found
    assert found["hook_written"] is True
    assert found["audit_writable"] is True
    # ...and the git config guard catches the planted hook and puts things back
    assert only_run(repo)["stop_reason"] == "protected_path"
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()


def test_missing_bwrap_is_exit_3_with_an_install_hint(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("noop_agent.py"), "false", sandbox="bwrap")}
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 3, done.stderr
    assert "bubblewrap" in done.stderr and "apt-get install bubblewrap" in done.stderr
    assert not (repo / ".git" / "outloop" / "runs").exists()


def test_an_agent_script_under_tmp_still_runs_in_the_sandbox(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # /tmp is an empty tmpfs inside the sandbox; the agent's own program must stay visible
    script = tmp_path / "agent.py"
    script.write_text("import pathlib; pathlib.Path('counter.txt').write_text('1')\n")
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                [sys.executable, str(script)], counter_goal(1), sandbox="bwrap"
            )
        }
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 0, done.stderr
    assert only_run(repo)["stop_reason"] == "goal_met"
