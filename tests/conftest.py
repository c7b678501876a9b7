"""Shared fixtures: every test runs with user state in tmp and a pinned git identity.

Modelled on tox's and pre-commit's suites: real git repos in temp dirs, and a
guard that fails any test that leaks changes to ``os.environ``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job with SIGINT ignored, and an ignored signal
    # stays ignored across exec: every outloop a test starts would then ignore
    # Ctrl-C, and the tests of Ctrl-C would fail for a reason outside outloop.
    # A handler, unlike SIG_IGN, is reset to the default in each child.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


@pytest.fixture
def no_environment_leaks() -> Iterator[None]:
    """Fail a test that changes os.environ without restoring it (monkeypatch restores).

    Requested first by the autouse fixture below, so it is set up before
    ``monkeypatch`` and checks only after monkeypatch has undone its changes.
    """
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    # pytest itself sets this one for each test phase
    before.pop("PYTEST_CURRENT_TEST", None)
    after.pop("PYTEST_CURRENT_TEST", None)
    if before != after:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        os.environ.clear()
        os.environ.update(before)
        pytest.fail(f"test leaked environment changes: {changed}")


@pytest.fixture(autouse=True)
def isolated_user_state(
    no_environment_leaks: None,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """Move HOME and XDG dirs to tmp so no test reads or writes the real user's state."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    # git must not read the developer's ~/.gitconfig or /etc/gitconfig
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    for key in [k for k in os.environ if k.startswith("OUTLOOP_")]:
        monkeypatch.delenv(key)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    yield home


def git(cwd: Path, *args: str) -> str:
    """Run git in cwd for test setup and assertions; raises on failure."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


RepoFactory = Callable[..., Path]


@pytest.fixture
def make_repo(tmp_path: Path) -> RepoFactory:
    """Build a real git repo from a dict of files and commit it.

    Usage: ``repo = make_repo({"a.py": "...", ".outloop/x.yml": "..."})``.
    """
    counter = 0

    def factory(
        files: dict[str, str | bytes], *, name: str | None = None, commit: bool = True
    ) -> Path:
        nonlocal counter
        counter += 1
        root = tmp_path / (name or f"repo{counter}")
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        if commit:
            git(root, "add", "-A")
            git(root, "commit", "-q", "--allow-empty", "-m", "initial")
        return root

    return factory
