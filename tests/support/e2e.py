"""Helpers for end-to-end tests: run the real CLI on real repos, inspect what it left."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import git

AGENTS = Path(__file__).parent / "agents"
PY = sys.executable
REPO_ROOT = Path(__file__).resolve().parents[2]


def agent_cmd(script: str, *args: str) -> list[str]:
    return [PY, str(AGENTS / script), *args]


def counter_goal(target: int = 3) -> str:
    """A goal met once counter.txt holds at least ``target``."""
    code = (
        "import pathlib,sys; p=pathlib.Path('counter.txt'); "
        f"v=int(p.read_text()) if p.exists() else 0; print('counter is', v); sys.exit(0 if v>={target} else 1)"
    )
    return f'{PY} -c "{code}"'


def loop_yaml(command: list[str], goal: str, **overrides: Any) -> str:
    data: dict[str, Any] = {
        "description": "test loop",
        "agent": {
            "preset": "command",
            "command": command,
            "prompt": "Make the goal pass.",
            "timeout": "60s",
        },
        "goal": {"run": goal, "timeout": "60s"},
        "limits": {"max_iterations": 5, "stall": 3},
    }
    for key, value in overrides.items():
        section, _, sub = key.partition("__")
        if sub:
            data.setdefault(section, {})[sub] = value
        else:
            data[section] = value
    return yaml.safe_dump(data, sort_keys=False)


def shared_dir(tmp_path: Path, name: str = "shared") -> tuple[Path, dict[str, Any]]:
    """A directory outside the repository that the agent of the default sandbox may write.

    For the start markers and loot a test reads from the host: the loop declares it
    (``sandbox: {write: [DIR]}``), as a user would a cache. Returns the directory and
    the loop's ``sandbox`` value.
    """
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return directory, {"write": [str(directory)]}


def run_cli(
    cwd: Path, *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PY, "-m", "outloop_cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"outloop {args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
    return done


def run_python(
    code: str, cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter that imports outloop from this checkout, in ``cwd``."""
    return subprocess.run(
        [PY, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO_ROOT)},
    )


def run_cli_patched(
    repo: Path, patch: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`outloop ARGS` in ``repo``, in a fresh interpreter after ``patch`` (Python source) ran.

    For the controls of attack tests: the patch takes one protection out of a
    real run, and the same attack then shows what that protection stops.
    """
    main = f"import sys\nfrom outloop_cli.main import main\nsys.exit(main({list(args)!r}))\n"
    return run_python(patch + main, repo, env=env)


def runs_dir(repo: Path) -> Path:
    return repo / ".git" / "outloop" / "runs"


def only_run(repo: Path) -> dict[str, Any]:
    runs = sorted(runs_dir(repo).iterdir())
    assert len(runs) == 1, runs
    return dict(json.loads((runs[0] / "run.json").read_text()))


def agent_report(repo: Path) -> dict[str, Any]:
    """The last JSON line the agent of the repo's only run printed in its first turn."""
    record = only_run(repo)
    log = runs_dir(repo) / str(record["run_id"]) / "logs" / "iter-001-agent.log"
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, log.read_text()
    return dict(json.loads(lines[-1]))


def branch_log(repo: Path, branch: str, base: str) -> list[dict[str, str]]:
    """Commits on the run's branch since base, oldest first."""
    sep = "\x1f"
    out = git(
        repo,
        "log",
        "--reverse",
        f"--format=%H{sep}%an{sep}%ae{sep}%cn{sep}%ce{sep}%B%x1e",
        f"{base}..{branch}",
    )
    commits = []
    for chunk in out.split("\x1e"):
        chunk = chunk.strip("\n")
        if not chunk:
            continue
        sha, an, ae, cn, ce, body = chunk.split(sep)
        commits.append(
            {
                "sha": sha,
                "author": an,
                "author_email": ae,
                "committer": cn,
                "committer_email": ce,
                "body": body,
            }
        )
    return commits


def checkout_state(repo: Path) -> dict[str, Any]:
    """Everything a user would notice in their checkout, hashed byte for byte."""
    index = repo / ".git" / "index"
    state: dict[str, Any] = {
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None,
        "head_file": (repo / ".git" / "HEAD").read_text(),
    }
    files = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if rel.parts[0] == ".git":
            continue
        if path.is_file() and not path.is_symlink():
            files[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_symlink():
            files[rel.as_posix()] = "link:" + str(path.readlink())
    state["files"] = files
    state["head"] = git(repo, "rev-parse", "HEAD").strip()
    state["branch"] = git(repo, "symbolic-ref", "HEAD").strip()
    state["stash"] = git(repo, "stash", "list")
    state["status"] = git(repo, "status", "--porcelain=v1", "--untracked-files=all", "--ignored")
    return state


def settle(repo: Path) -> None:
    """Let git refresh the index's stat cache once, so later reads don't rewrite it."""
    git(repo, "status", "--porcelain")


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # a zombie has exited; only its parent's bookkeeping is left
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_runner(repo: Path, *args: str) -> subprocess.Popen[str]:
    """Start `outloop run` (or any subcommand given in args) in the background."""
    return subprocess.Popen(
        [PY, "-m", "outloop_cli", *(args or ("run", "fix"))],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def pid_gone(pid: int) -> bool:
    """True when the process no longer exists (or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line names ``text``.

    How a test finds a sandboxed agent: the pid it sees for itself is its PID
    namespace's, not the host's, but its argv (a marker path) is the same.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline and not pid_gone(int(proc.name)):
            found.append(int(proc.name))
    return found


def kill_processes_mentioning(text: str) -> None:
    """Kill what a SIGKILLed runner left behind (its agents), found by their command lines."""
    import signal

    for pid in processes_mentioning(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
