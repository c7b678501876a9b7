"""A run's records rewritten from inside, with the chain recomputed, are caught by the run's key.

The agent of a real `outloop run` without a sandbox (where the log is
writable to it) rewrites the first audit event (the base commit, the agent),
recomputes every link after it, and moves run.json's head and base to
match: the plain chain, the record and the trailers all agree again. Only
the MAC with the run's key, kept outside the repository, tells. The control
verifies the same forged log without the key and finds nothing wrong, so the
key is what catches it.
"""

from __future__ import annotations

import json
from pathlib import Path

from outloop_cli.credentials.run_key import run_keys_dir
from tests.conftest import RepoFactory, git
from tests.support.e2e import agent_cmd, loop_yaml, only_run, run_cli, runs_dir


def _forged_run(make_repo: RepoFactory) -> tuple[Path, dict[str, object], str]:
    repo = make_repo({"README.md": "hello\n"})
    git(repo, "commit", "-q", "--allow-empty", "-m", "a commit to claim as the base")
    claimed = git(repo, "rev-parse", "HEAD").strip()
    (repo / ".outloop").mkdir()
    (repo / ".outloop/fix.yml").write_text(
        loop_yaml(agent_cmd("chain_forger_agent.py", claimed), "false", sandbox="none")
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "loop")
    done = run_cli(repo, "run", "fix", "--max-iterations", "1")
    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    audit = runs_dir(repo) / str(record["run_id"]) / "audit.jsonl"
    first = json.loads(audit.read_text().splitlines()[0])
    # the forgery took: the log's first event now names the claimed base
    assert (first["event"], first["base"], first["agent"]) == (
        "run_started",
        claimed,
        "forged-agent",
    )
    return repo, record, claimed


def test_a_recomputed_chain_fails_the_mac_of_the_run_key(make_repo: RepoFactory) -> None:
    repo, record, _ = _forged_run(make_repo)
    verified = run_cli(repo, "audit", "verify", str(record["run_id"]))
    assert verified.returncode == 1, verified.stdout + verified.stderr
    said = verified.stdout + verified.stderr
    assert "MAC does not match the run's key" in said and "line 1" in said


def test_control_without_the_key_the_same_forgery_verifies(make_repo: RepoFactory) -> None:
    repo, record, _ = _forged_run(make_repo)
    key = run_keys_dir() / f"{record['run_id']}.key"
    assert key.exists()
    key.unlink()
    verified = run_cli(repo, "audit", "verify", str(record["run_id"]))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "key is gone" in verified.stdout + verified.stderr


def test_every_line_is_sealed_and_the_key_never_leaves_its_file(make_repo: RepoFactory) -> None:
    repo = make_repo({".outloop/fix.yml": loop_yaml(agent_cmd("noop_agent.py"), "false")})
    done = run_cli(repo, "run", "fix", "--max-iterations", "1")
    record = only_run(repo)
    run_dir = runs_dir(repo) / str(record["run_id"])
    lines = (run_dir / "audit.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["mac"] for line in lines)
    key_file = run_keys_dir() / f"{record['run_id']}.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert oct(key_file.parent.stat().st_mode & 0o777) == "0o700"
    key = key_file.read_text().strip()
    outputs = [done.stdout, done.stderr, git(repo, "log", "--all", "-p", "--format=%B")]
    outputs += [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()]
    assert all(key not in text and bytes.fromhex(key).hex().upper() not in text for text in outputs)
    assert run_cli(repo, "audit", "verify").returncode == 0
