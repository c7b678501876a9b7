"""outloop's own push of a run's scratch branch — never the agent's, never another ref.

One refspec, always ``<commit>:refs/heads/<run branch>``, with
``--force-with-lease=refs/heads/<branch>:<expected>``: the remote branch is
moved only if it still is where this run last left it (or does not exist
yet, on the first push), so a push can never clobber somebody else's work,
and an iteration that rewrote nothing never needs ``--force`` at all.

It runs in the user's repository, after outloop imported the run's
commits there (never from the run's work tree, whose ``.git`` file is the
agent's). Hooks are off (``--no-verify`` and an empty ``core.hooksPath``). Tags are not followed and submodules are not pushed.
Credentials come in ``env`` (from the broker, or ``token_auth_env``) and
never in argv or the remote URL.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import CouldNotRun, GitError, UsageError
from outloop_cli.git.cli import Git

__all__ = [
    "PushRejected",
    "PushResult",
    "has_in_history",
    "push_branch",
    "remote_branch_head",
    "token_auth_env",
]

_SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_USERINFO_RE = re.compile(r"(?<=://)[^/@\s]+@")


class PushRejected(CouldNotRun):
    """The remote refused the push: the branch moved under us, or a rule forbids it."""


@dataclass(frozen=True)
class PushResult:
    """What one push did to the remote branch."""

    remote: str
    branch: str
    sha: str
    # where the remote branch was before ("" when it did not exist)
    previous: str
    # False when the remote already had exactly this commit
    updated: bool


def token_auth_env(
    remote_url: str,
    token: str,
    *,
    username: str = "x-access-token",
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Env that makes git send ``token`` to the remote's host, and to nothing else.

    An ``http.<scheme>://<host>/.extraHeader`` entry in ``GIT_CONFIG_*``
    variables: not in argv (``ps`` shows argv), not in any file, scoped by URL.
    """
    parts = urllib.parse.urlsplit(remote_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"cannot send a token to {redact_url(remote_url)}: only http(s) remotes take one",
            hint="use an https:// remote for pushes with a brokered token",
        )
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    scope = f"{parts.scheme}://{netloc}/"
    basic = base64.b64encode(f"{username}:{token}".encode()).decode("ascii")
    return with_git_config(
        base or {}, {f"http.{scope}.extraHeader": f"Authorization: Basic {basic}"}
    )


def with_git_config(env: Mapping[str, str], settings: Mapping[str, str]) -> dict[str, str]:
    """Add ``GIT_CONFIG_KEY_n``/``VALUE_n`` pairs after whatever ``env`` already holds."""
    merged = dict(env)
    try:
        count = int(merged.get("GIT_CONFIG_COUNT", "0") or "0")
    except ValueError:
        count = 0
    for key, value in settings.items():
        merged[f"GIT_CONFIG_KEY_{count}"] = key
        merged[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    merged["GIT_CONFIG_COUNT"] = str(count)
    return merged


def redact_url(text: str) -> str:
    """``https://user:secret@host/x`` → ``https://***@host/x`` wherever it appears."""
    return _USERINFO_RE.sub("***@", text)


def remote_branch_head(
    worktree: Path, *, remote: str, branch: str, env: Mapping[str, str] | None = None
) -> str:
    """Where ``branch`` is on the remote now ("" when it does not exist)."""
    _check_branch(branch)
    try:
        out = Git(worktree).run(
            "ls-remote", "--heads", "--", remote, f"refs/heads/{branch}", env=env
        )
    except GitError as exc:
        raise CouldNotRun(
            f"could not read {branch} from the remote {redact_url(remote)}: {redact_url(exc.stderr)}",
            hint="check the remote URL and the credential for it",
        ) from None
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return ""


def has_in_history(repo: Path, commit: str, ref: str) -> bool:
    """Whether ``commit`` is ``ref`` or in its history (False for an unknown commit)."""
    try:
        Git(repo).run("merge-base", "--is-ancestor", commit, ref)
    except GitError:
        return False
    return True


def push_branch(
    worktree: Path,
    *,
    remote: str,
    branch: str,
    sha: str,
    expected: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
) -> PushResult:
    """Push ``sha`` to ``refs/heads/<branch>`` on ``remote`` if the branch is still at ``expected``.

    ``expected`` is the commit this run pushed last, or "" for "must not
    exist yet". ``remote`` is a remote name or URL; ``env`` carries the
    credential (git's own credential helper setup from the broker, or
    ``token_auth_env``).
    """
    _check_branch(branch)
    if not _SHA_RE.match(sha):
        raise ValueError(f"push_branch needs a full commit id, not {sha!r}")
    if expected and not _SHA_RE.match(expected):
        raise ValueError(f"expected must be a full commit id or '', not {expected!r}")
    ref = f"refs/heads/{branch}"
    git_env = with_git_config(
        env or {},
        {
            "core.hooksPath": "/dev/null",
            "push.recurseSubmodules": "no",
            "push.followTags": "false",
            # transports that run commands: never for outloop's push
            "protocol.ext.allow": "never",
            "protocol.fd.allow": "never",
        },
    )
    args = [
        "push",
        "--porcelain",
        "--no-verify",
        "--no-follow-tags",
        f"--force-with-lease={ref}:{expected}",
        "--",
        remote,
        f"{sha}:{ref}",
    ]
    try:
        out = Git(worktree).run(*args, env=git_env, ok_codes=(0, 1))
    except GitError as exc:
        raise CouldNotRun(
            f"git push of {branch} to {redact_url(remote)} failed: {redact_url(exc.stderr)}",
            hint="check the remote and that the `github`/`gitlab` credential may push to it",
        ) from None
    return _parse_porcelain(out, remote=remote, branch=branch, sha=sha, expected=expected)


def _parse_porcelain(out: str, *, remote: str, branch: str, sha: str, expected: str) -> PushResult:
    ref = f"refs/heads/{branch}"
    for line in out.splitlines():
        # <flag>\t<from>:<to>\t<summary> (<reason>)
        fields = line.split("\t")
        if len(fields) < 3 or not fields[1].endswith(f":{ref}"):
            continue
        flag, summary = fields[0], fields[2]
        if flag == "=":
            return PushResult(remote, branch, sha, previous=sha, updated=False)
        if flag in (" ", "+", "*"):
            return PushResult(remote, branch, sha, previous=expected, updated=True)
        if "stale info" in summary or "fetch first" in summary or "non-fast-forward" in summary:
            raise PushRejected(
                f"the remote branch {branch} is not where this run left it "
                f"(expected {expected[:10] or 'no branch'}); not overwriting it",
                hint="someone else pushed to the run's branch; fetch it and look before resuming",
            )
        raise PushRejected(
            f"the remote rejected the push of {branch}: {redact_url(summary)}",
            hint="a branch protection rule or a permission may forbid it",
        )
    raise CouldNotRun(
        f"git push of {branch} to {redact_url(remote)} gave no status for {ref}",
        hint="run `git push` by hand in the worktree to see what git says",
    )


def _check_branch(branch: str) -> None:
    if (
        not branch
        or branch.startswith(("-", "/", "refs/"))
        or any(part in branch for part in ("..", "@{", "\\", " ", ":", "~", "^", "?", "*", "["))
        or branch.endswith((".lock", "/", "."))
    ):
        raise UsageError(f"`{branch}` is not a branch name outloop will push")
