"""The sandbox's file system is an allow-list: what an agent of a real run reaches, and not.

The world each test builds is a user's machine: key files in ``$HOME``, another
client's repository outside ``$HOME`` (under ``/var/tmp``), another run's
worktree in outloop's state, the policy and the secrets index, a canary in the
runner's environment and one in its session keyring. The agent of a real
``outloop run`` (``fs_escape_agent.py``) goes after them by path, through
symlinks, hard links and ``..`` from its worktree, through ``/proc`` and the
kernel keyring; it asks whether ``/proc/sys`` is writable (never writing).
Every attack is paired with a control that shows it works without the
protection: the same agent with ``sandbox: none``, or the same bubblewrap view
with just that one protection taken out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from outloop_cli import paths
from outloop_cli.sandbox.bwrap import GitMounts, wrap
from tests.conftest import RepoFactory, git
from tests.support.e2e import (
    AGENTS,
    PY,
    agent_cmd,
    counter_goal,
    loop_yaml,
    only_run,
    run_cli,
    runs_dir,
    shared_dir,
    start_runner,
    wait_for,
)

ROOT = os.geteuid() == 0


@dataclass
class World:
    """Canaries where a same-user process could find them; name → (path, content)."""

    home_secrets: dict[str, Path]
    client_b: Path
    client_b_secret: Path
    same_fs_secret: Path
    other_run: Path
    outloop_files: dict[str, Path]
    contents: dict[Path, str]


def _plant(path: Path, text: str, contents: dict[Path, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    contents[path] = text
    return path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    home = Path(os.environ["HOME"])
    contents: dict[Path, str] = {}
    home_secrets = {
        name: _plant(home / rel, f"canary-{name}-{os.urandom(8).hex()}\n", contents)
        for name, rel in {
            "ssh": ".ssh/id_ed25519",
            "netrc": ".netrc",
            "keyring": ".local/share/keyrings/login.keyring",
            "gh": ".config/gh/hosts.yml",
        }.items()
    }
    # another client's repository, outside $HOME and outside /tmp
    outside = Path(tempfile.mkdtemp(prefix="outloop-client-b-", dir="/var/tmp"))
    client_b = outside / "client-b"
    client_b_secret = _plant(client_b / "secret.txt", f"client-b-{os.urandom(8).hex()}\n", contents)
    git(client_b, "init", "-q")
    # on the worktree's file system (a hard link cannot cross one)
    same_fs_secret = _plant(
        tmp_path / "client-c" / "secret.txt", f"client-c-{os.urandom(8).hex()}\n", contents
    )
    other_run = _plant(
        paths.state_home() / "worktrees" / "other-0000000000" / "run-1" / "secret.txt",
        f"other-run-{os.urandom(8).hex()}\n",
        contents,
    )
    outloop_files = {
        "policy": _plant(
            paths.config_home() / "policy.yml", "workspaces: {}  # canary-policy\n", contents
        ),
        "index": _plant(
            paths.data_home() / "outloop" / "secrets-index.json", '{"canary": 1}\n', contents
        ),
    }
    try:
        yield World(
            home_secrets,
            client_b,
            client_b_secret,
            same_fs_secret,
            other_run,
            outloop_files,
            contents,
        )
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def _report(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    return dict(json.loads(lines[-1]))


def _attack(
    make_repo: RepoFactory, plan: dict[str, Any], sandbox: Any, *, prefix: list[str] | None = None
) -> dict[str, Any]:
    """One turn of fs_escape_agent.py in a real `outloop run`; what it reported."""
    # braces are placeholders in a command: doubled, they reach the agent as written
    argument = json.dumps(plan).replace("{", "{{").replace("}", "}}")
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("fs_escape_agent.py", argument), "false", sandbox=sandbox
            )
        }
    )
    if prefix is None:
        done = run_cli(repo, "run", "fix", "--max-iterations", "1")
    else:
        done = subprocess.run(
            [*prefix, PY, "-m", "outloop_cli", "run", "fix", "--max-iterations", "1"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
            input="",
        )
    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["sandbox"]["active"] is (sandbox != "none"), record["sandbox"]
    log = runs_dir(repo) / str(record["run_id"]) / "logs" / "iter-001-agent.log"
    return _report(log.read_text())


def _found(world: World, values: dict[str, Any]) -> set[Path]:
    """Which planted files the agent got the content of."""
    return {
        Path(p)
        for p, text in values.items()
        if text is not None and text == world.contents.get(Path(p))
    }


# --- by path -------------------------------------------------------------------------


def _by_path(world: World) -> dict[str, Any]:
    files = [
        *world.home_secrets.values(),
        world.client_b_secret,
        world.other_run,
        *world.outloop_files.values(),
    ]
    return {
        "read": [str(p) for p in files],
        "list": [str(world.client_b), str(paths.state_home()), str(Path.home())],
    }


def test_home_secrets_other_clients_other_runs_and_outloops_state_are_out_of_view(
    make_repo: RepoFactory, world: World
) -> None:
    found = _attack(make_repo, _by_path(world), "auto")

    assert _found(world, found["read"]) == set()
    assert found["list"][str(world.client_b)] is None
    # $HOME is empty but for the mount points on the way to the worktree
    assert set(found["list"][str(Path.home())] or []) <= {".local"}
    assert found["list"][str(paths.state_home())] == ["worktrees"]


def test_control_without_a_sandbox_the_same_paths_are_read(
    make_repo: RepoFactory, world: World
) -> None:
    found = _attack(make_repo, _by_path(world), "none")

    assert _found(world, found["read"]) == set(world.contents) - {world.same_fs_secret}
    assert found["list"][str(world.client_b)] == [".git", "secret.txt"]


# --- through links and .. from the worktree -------------------------------------------


def _links(world: World) -> dict[str, Any]:
    targets = [str(world.client_b_secret), str(world.home_secrets["ssh"]), str(world.other_run)]
    return {
        "symlink": targets,
        "dotdot": targets,
        "hardlink": [str(world.same_fs_secret), str(world.home_secrets["netrc"])],
    }


def test_symlinks_hard_links_and_dotdot_from_the_worktree_reach_nothing(
    make_repo: RepoFactory, world: World
) -> None:
    found = _attack(make_repo, _links(world), "auto")

    assert _found(world, found["symlink"]) == set()
    assert _found(world, found["dotdot"]) == set()
    assert _found(world, found["hardlink"]) == set()


def test_control_without_a_sandbox_links_and_dotdot_lead_out(
    make_repo: RepoFactory, world: World
) -> None:
    found = _attack(make_repo, _links(world), "none")

    targets = {world.client_b_secret, world.home_secrets["ssh"], world.other_run}
    assert _found(world, found["symlink"]) == targets
    assert _found(world, found["dotdot"]) == targets
    # the one on the worktree's file system; $HOME is on it too in this test's layout
    assert world.same_fs_secret in _found(world, found["hardlink"])


# --- the runner's /proc ---------------------------------------------------------------


def _ptrace_allowed() -> bool:
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    return ROOT or not scope.exists() or scope.read_text().strip() == "0"


def test_the_runners_environ_and_memory_are_out_of_reach(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "canary-" + os.urandom(12).hex()
    monkeypatch.setenv("SOME_RUNNER_TOKEN", canary)

    found = _attack(make_repo, {"runner": canary[::-1]}, "auto")

    assert found["environ_leaks"] == []
    assert found["mem_read"] == []


def test_control_without_a_sandbox_the_runners_environ_and_memory_are_read(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "canary-" + os.urandom(12).hex()
    monkeypatch.setenv("SOME_RUNNER_TOKEN", canary)

    found = _attack(make_repo, {"runner": canary[::-1]}, "none")

    assert found["environ_leaks"], found
    if _ptrace_allowed():
        assert found["mem_read"], found


# --- the kernel keyring ---------------------------------------------------------------

KEY_NAME = "outloop-test-canary"


def _in_a_session_keyring_holding(value: str) -> list[str]:
    """A command prefix: a new session keyring with the canary key in it, then the command."""
    assert shutil.which("keyctl"), "these tests need keyctl (Debian/Ubuntu: keyutils)"
    script = f'printf %s "$CANARY" | keyctl padd user {KEY_NAME} @s >/dev/null && exec "$@"'
    return ["env", f"CANARY={value}", "keyctl", "session", "-", "sh", "-c", script, "sh"]


def test_the_runners_session_keyring_is_out_of_reach(make_repo: RepoFactory) -> None:
    value = "canary-" + os.urandom(12).hex()

    found = _attack(
        make_repo, {"keyring": KEY_NAME}, "auto", prefix=_in_a_session_keyring_holding(value)
    )

    assert found["keyring"] is None


def test_control_without_a_sandbox_the_key_is_requested_and_read(
    make_repo: RepoFactory,
) -> None:
    value = "canary-" + os.urandom(12).hex()

    found = _attack(
        make_repo, {"keyring": KEY_NAME}, "none", prefix=_in_a_session_keyring_holding(value)
    )

    assert found["keyring"] == value


def _view(tmp_path: Path, plan: dict[str, Any]) -> tuple[list[str], Path]:
    """The run's bubblewrap command line for the escape agent, around a throwaway repo."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "x")
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "scratch", str(worktree))
    argv = wrap(
        [PY, str(AGENTS / "fs_escape_agent.py"), json.dumps(plan)],
        bwrap=shutil.which("bwrap") or "bwrap",
        worktree=worktree,
        git=GitMounts((), repo / ".git"),
        path_env=os.environ.get("PATH"),
    )
    return argv, worktree


def test_control_bubblewrap_alone_leaves_the_session_keyring_in_reach(tmp_path: Path) -> None:
    # the same view, started without the fresh session keyring outloop's spawn adds:
    # user and PID namespaces do not stop it, so the keyring join is what does
    value = "canary-" + os.urandom(12).hex()
    argv, worktree = _view(tmp_path, {"keyring": KEY_NAME})

    done = subprocess.run(
        [*_in_a_session_keyring_holding(value), *argv],
        cwd=worktree,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert _report(done.stdout)["keyring"] == value


# --- kernel knobs in /proc ------------------------------------------------------------

# asked with access(2) only: nothing is ever written to these
KNOBS = ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/panic"]


def test_kernel_knobs_in_proc_are_read_only_even_for_root(make_repo: RepoFactory) -> None:
    found = _attack(make_repo, {"access_w": [*KNOBS, "/proc/sysrq-trigger"]}, "auto")

    assert found["access_w"] == dict.fromkeys([*KNOBS, "/proc/sysrq-trigger"], False)


def test_control_without_the_read_only_binds_root_could_write_them(tmp_path: Path) -> None:
    argv, worktree = _view(tmp_path, {"access_w": KNOBS})
    # the view with /proc/sys as --proc mounts it: writable to uid 0
    at = argv.index("/proc/sys")
    assert argv[at - 1 : at + 2] == ["--ro-bind-try", "/proc/sys", "/proc/sys"]
    del argv[at - 1 : at + 2]

    done = subprocess.run(argv, cwd=worktree, capture_output=True, text=True, timeout=60)

    # uid 0 in the sandbox's user namespace is uid 0 to the owner check of these files;
    # a normal user's are not theirs either way
    assert _report(done.stdout)["access_w"] == dict.fromkeys(KNOBS, ROOT)


# --- the loop's own additions ---------------------------------------------------------


def test_declared_read_and_write_paths_are_in_view_and_nothing_beside_them(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    contents: dict[Path, str] = {}
    shown = _plant(tmp_path / "tools" / "data.txt", "a tool's data\n", contents)
    cache = tmp_path / "cache"
    cache.mkdir()
    beside = _plant(tmp_path / "undeclared" / "data.txt", "not declared\n", contents)
    plan = {
        "read": [str(shown), str(beside)],
        "write": [str(cache), str(shown.parent), str(beside.parent)],
    }

    found = _attack(
        make_repo, plan, {"mode": "auto", "read": [str(shown.parent)], "write": [str(cache)]}
    )

    assert found["read"] == {str(shown): "a tool's data\n", str(beside): None}
    assert found["write"] == {str(cache): True, str(shown.parent): False, str(beside.parent): False}
    assert (cache / "written-by-the-agent").exists()


def _refused(make_repo: RepoFactory, path: str, key: str = "read") -> str:
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("noop_agent.py"), counter_goal(1), sandbox={key: [path]}
            )
        }
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert not runs_dir(repo).exists(), "a refused loop must leave nothing behind"
    return done.stderr


def test_a_declared_path_reaching_a_secret_store_outloops_state_or_a_repository_is_refused(
    make_repo: RepoFactory, world: World, tmp_path: Path
) -> None:
    link = Path.home() / "projects-link"
    link.symlink_to(world.client_b)
    cases = {
        "~/.ssh": "a secret store",
        "~/.local/share/keyrings": "a secret store",
        "~/.local": "would show",  # holds the keyring files and outloop's state
        "~/.local/state": "outloop's state",
        str(paths.config_home()): "outloop's config",
        str(world.client_b): "the git repository at",
        str(world.client_b.parent): "the git repository at",  # a repository below it
        "~/projects-link": "the git repository at",  # judged where it leads
    }
    for path, what in cases.items():
        said = _refused(make_repo, path)
        # file and line of the entry, the key, what it would show, and a hint
        assert ".outloop/fix.yml" in said and ":" in said, said
        assert "sandbox.read[0]" in said and what in said, (path, said)
        assert "hint:" in said


def test_a_declared_path_of_another_workspace_is_refused(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "clients" / "b-project"
    other.mkdir(parents=True)
    policy = tmp_path / "policy.yml"
    policy.write_text(f"workspaces:\n  client-b:\n    repos: ['{tmp_path}/clients/b-*']\n")
    policy.chmod(0o600)
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))

    said = _refused(make_repo, str(tmp_path / "clients"), key="write")

    assert "sandbox.write[0]" in said and "workspace client-b's repositories" in said


# --- on by default, and honest when it cannot be ----------------------------------------


def _path_without_bwrap(tmp_path: Path, fake_bwrap: str | None = None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    if fake_bwrap is not None:
        # a bubblewrap the kernel will not give namespaces to, as on a locked-down host
        fake = bin_dir / "bwrap"
        fake.write_text(f"#!/bin/sh\necho '{fake_bwrap}' >&2\nexit 1\n")
        fake.chmod(0o755)
    return str(bin_dir)


def test_auto_without_bubblewrap_runs_and_says_so_everywhere(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 0, done.stderr
    assert "WITHOUT a sandbox" in done.stderr and "apt-get install bubblewrap" in done.stderr
    record = only_run(repo)
    assert record["sandbox"]["requested"] == "auto"
    assert record["sandbox"]["active"] is False
    assert "bubblewrap is not installed" in record["sandbox"]["warning"]
    run_dir = runs_dir(repo) / str(record["run_id"])
    assert "WITHOUT a sandbox" in (run_dir / "summary.md").read_text()
    events = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    [sandbox] = [e for e in events if e["event"] == "sandbox"]
    assert sandbox["active"] is False and "not installed" in sandbox["warning"]


def test_without_user_namespaces_auto_warns_and_bwrap_refuses_with_what_to_enable(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops = {
        f".outloop/{mode}.yml": loop_yaml(
            agent_cmd("counter_agent.py"), counter_goal(1), sandbox=mode
        )
        for mode in ("auto", "bwrap")
    }
    repo = make_repo(loops)
    said = "bwrap: setting up uid map: Permission denied"
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path, fake_bwrap=said))

    auto = run_cli(repo, "run", "auto")
    required = run_cli(repo, "run", "bwrap")

    assert auto.returncode == 0, auto.stderr
    assert "WITHOUT a sandbox" in auto.stderr and said in auto.stderr
    assert "unprivileged_userns_clone" in auto.stderr
    assert required.returncode == 3, required.stderr
    assert "`sandbox: bwrap` needs bubblewrap" in required.stderr
    assert "user namespaces" in required.stderr and "Traceback" not in required.stderr


def test_sandbox_none_is_recorded_as_the_users_choice(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"), counter_goal(1), sandbox="none"
            )
        }
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 0, done.stderr
    assert "WITHOUT a sandbox" not in done.stderr
    record = only_run(repo)
    assert record["sandbox"] == {"requested": "none", "active": False, "warning": None}
    summary = (runs_dir(repo) / str(record["run_id"]) / "summary.md").read_text()
    assert "none (`sandbox: none`)" in summary


def test_the_default_runs_in_the_sandbox(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    assert record["sandbox"] == {"requested": "auto", "active": True, "warning": None}
    summary = (runs_dir(repo) / str(record["run_id"]) / "summary.md").read_text()
    assert "| Sandbox | bubblewrap |" in summary


# --- surviving the runner -------------------------------------------------------------


def _holding(marker: Path) -> list[int]:
    """Host pids whose command line names ``marker`` (the agent, and bwrap around it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(marker).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def _gone(marker: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _holding(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_a_sandboxed_agent_dies_with_its_runner(
    make_repo: RepoFactory, tmp_path: Path, sandbox: str
) -> None:
    shared, declared = shared_dir(tmp_path)
    marker = shared / "started"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("sleepy_agent.py", str(marker), "60"),
                counter_goal(1),
                sandbox={**declared, "mode": sandbox},
            )
        }
    )
    runner = start_runner(repo)
    wait_for(marker)
    assert _holding(marker)

    runner.kill()
    runner.communicate(timeout=30)

    if sandbox == "auto":
        assert _gone(marker), "the sandboxed agent outlived its runner"
    else:
        # the control: unsandboxed, the agent lives on (resume kills it later)
        survivors = _holding(marker)
        assert survivors
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
