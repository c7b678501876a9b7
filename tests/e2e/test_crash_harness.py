"""Kill the runner with SIGKILL at random moments, resume, and check nothing was lost.

Each trial starts a real run, kills `outloop` at a random moment (so the kill
lands in the baseline, the agent's turn, the snapshot, the goal, the commit or
a record write), sometimes kills the resume too, then resumes until the run
ends. After every trial: every commit made before a kill is still on the
branch, the run met its goal, the audit chain verifies against the heads kept
in run.json and in the commits, and the user's checkout is byte-identical.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from outloop_cli.store.audit import ChainHead, verify
from tests.conftest import RepoFactory, git
from tests.e2e.test_run_e2e import make_loop_repo
from tests.support.e2e import (
    PY,
    agent_cmd,
    checkout_state,
    loop_yaml,
    run_cli,
    runs_dir,
    start_runner,
)

TRIALS = 30
SEED = 20261127


def _goal(target: int) -> str:
    code = (
        "import pathlib,sys,time; time.sleep(0.05); p=pathlib.Path('counter.txt'); "
        f"v=int(p.read_text()) if p.exists() else 0; print('counter', v); sys.exit(0 if v>={target} else 1)"
    )
    return f'{PY} -c "{code}"'


def _record(repo: Path) -> dict[str, object] | None:
    runs = sorted(runs_dir(repo).glob("*/run.json")) if runs_dir(repo).exists() else []
    if not runs:
        return None
    assert len(runs) == 1, runs
    return dict(json.loads(runs[0].read_text()))


def _branch_commits(repo: Path, record: dict[str, object]) -> list[str]:
    branch = str(record["branch"])
    if not git(repo, "branch", "--list", branch).strip():
        return []
    out = git(repo, "rev-list", "--reverse", f"{record['base_commit']}..{branch}")
    return out.split()


def _audit_lines(repo: Path) -> int:
    logs = list(runs_dir(repo).glob("*/audit.jsonl")) if runs_dir(repo).exists() else []
    return sum(log.read_bytes().count(b"\n") for log in logs)


def _kill_at_random(repo: Path, args: tuple[str, ...], rng: random.Random) -> str | None:
    """Start outloop, SIGKILL it at a random moment; the phase it died in (None: it finished).

    The moment is "a random number of audit events from now, plus a random
    jitter", so kills spread over every step instead of piling up in start-up.
    """
    events_before = _audit_lines(repo)
    target = events_before + rng.randint(0, 10)
    jitter = rng.uniform(0, 0.12)
    runner = start_runner(repo, *args)
    deadline = time.monotonic() + 30
    while runner.poll() is None and time.monotonic() < deadline:
        if _audit_lines(repo) >= target:
            break
        time.sleep(0.002)
    time.sleep(jitter)
    if runner.poll() is not None:
        runner.communicate()
        return None
    runner.kill()
    runner.communicate(timeout=30)
    record = _record(repo)
    return str(record.get("phase")) if record else "before run.json"


def _trailer_heads(repo: Path, record: dict[str, object]) -> list[ChainHead]:
    heads = []
    for sha in _branch_commits(repo, record):
        body = git(repo, "show", "-s", "--format=%B", sha)
        for line in body.splitlines():
            if line.startswith("Outloop-Audit-Head: "):
                seq, _, digest = line.split(": ", 1)[1].partition(":")
                heads.append(ChainHead(int(seq), digest))
    return heads


@pytest.mark.slow
# 30 trials of real runs, kills and resumes: about 100 s alone on a 2-core machine, but
# past the suite's 300 s hang guard when that machine is busy. Every step already has
# its own deadline (run_cli's 120 s, the kill loop's 30 s), so the whole-test guard
# is here only to catch a hang and is sized for the work, not for an idle machine.
@pytest.mark.timeout(1200)
def test_sigkill_at_random_moments_then_resume_loses_nothing(make_repo: RepoFactory) -> None:
    rng = random.Random(SEED)
    phases: Counter[str] = Counter()
    for trial in range(TRIALS):
        repo = make_loop_repo(
            make_repo,
            loop_yaml(
                agent_cmd("jittery_agent.py"),
                _goal(4),
                limits={"max_iterations": 8, "stall": 3},
            ),
            name="fix",
        )
        before = checkout_state(repo)
        died_in = _kill_at_random(repo, ("run", "fix"), rng)
        phases[died_in or "finished"] += 1
        kept: list[str] = []
        record = _record(repo)
        if record is not None:
            kept = _branch_commits(repo, record)
        # sometimes the resume is killed too
        if record is not None and died_in is not None and rng.random() < 0.3:
            again = _kill_at_random(repo, ("resume", str(record["run_id"])), rng)
            phases[f"resume:{again or 'finished'}"] += 1
            record = _record(repo)
            assert record is not None
            after_second = _branch_commits(repo, record)
            assert after_second[: len(kept)] == kept, f"trial {trial}: a commit was lost"
            kept = after_second
        if record is None:
            done = run_cli(repo, "run", "fix")
        elif record.get("state") == "running" or record.get("stop_reason") != "goal_met":
            done = run_cli(repo, "resume", str(record["run_id"]))
        else:
            done = None
        if done is not None:
            assert done.returncode == 0, f"trial {trial} ({died_in}): {done.stderr}"
        record = _record(repo)
        assert record is not None
        assert record["stop_reason"] == "goal_met", f"trial {trial}: {record['stop_reason']}"
        final = _branch_commits(repo, record)
        assert final[: len(kept)] == kept, f"trial {trial}: a committed iteration was lost"
        assert git(repo, "show", f"{record['branch']}:counter.txt").strip() >= "4"
        audit = runs_dir(repo) / str(record["run_id"]) / "audit.jsonl"
        head = record.get("audit_head")
        assert isinstance(head, dict)
        result = verify(audit, expected_head=ChainHead(int(head["seq"]), str(head["hash"])))
        assert result.ok, (
            f"trial {trial} ({died_in}): audit line {result.bad_line}: {result.reason}"
        )
        for mark in _trailer_heads(repo, record):
            result = verify(audit, expected_head=mark)
            assert result.ok, f"trial {trial}: trailer head {mark}: {result.reason}"
        verified = run_cli(repo, "audit", "verify", str(record["run_id"]))
        assert verified.returncode == 0, f"trial {trial}: {verified.stdout}{verified.stderr}"
        assert "warning" not in verified.stderr.lower(), verified.stderr
        assert checkout_state(repo) == before, f"trial {trial}: the user's checkout changed"
    print("\ncrash harness: where the kills landed:", dict(sorted(phases.items())))
    killed = sum(n for phase, n in phases.items() if not phase.endswith("finished"))
    assert killed >= TRIALS * 2 // 3, phases
    assert len({p for p in phases if not p.endswith("finished")}) >= 3, phases
