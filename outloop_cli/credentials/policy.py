"""The user's policy: which repos belong to which workspace, and which secrets each may use.

The policy lives outside every repository (``$XDG_CONFIG_HOME/outloop/policy.yml``,
or ``--policy`` / ``$OUTLOOP_POLICY``) because a client's repo must not be able
to claim another client's key: the loop file only *asks* for secrets by name,
the policy decides. ::

    workspaces:
      client-a:
        repos: ["github.com/agency/client-a-*", "/home/me/src/client-a"]
        secrets: [openai, crm]

Repo patterns come in two kinds:

* a remote, written ``host/path`` (or as any git URL: ``https://…``,
  ``ssh://…``, ``git@host:path``; it is normalised the same way as the repo's
  remotes, see :func:`~outloop_cli.credentials.remotes.normalize_remote`). Matched case-insensitively, since
  the big forges treat owner and repo names that way;
* a path, starting with ``/`` or ``~``, matched against the repo's top-level
  directory (and against remotes that are local paths).

``*`` and ``?`` match within one path segment, ``**`` across segments; a
pattern must match the whole remote or path. A run matching no workspace, or
more than one, gets no secrets, and :class:`WorkspaceMatch` says why.

The file is validated like a loop file (every problem with file:line:col and
a hint, by its declaration in :mod:`outloop_cli.config.policy_schema`) plus two
policy-wide rules: no repo
pattern in two workspaces, and no two (workspace, secret) pairs that map to
the same ``OUTLOOP_SECRET_*`` variable. A policy that other users can write,
or that lies inside the repository being run, is refused.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outloop_cli.config.locate import child
from outloop_cli.config.policy_model import Policy, SecretEntry, Workspace
from outloop_cli.config.policy_schema import POLICY
from outloop_cli.config.spec import INVALID, Context
from outloop_cli.credentials.ci_env import env_var_name
from outloop_cli.credentials.remotes import normalize_remote
from outloop_cli.errors import ConfigError, Problem

POLICY_ENV = "OUTLOOP_POLICY"
POLICY_HINT = "see `workspaces:` in the docs: each workspace has `repos:` and `secrets:`"


@dataclass(frozen=True)
class WorkspaceMatch:
    """The workspace a repo belongs to, or why it belongs to none."""

    workspace: Workspace | None
    reason: str
    # which pattern matched which of the repo's identities, for the record
    matched_by: tuple[str, ...] = ()
    # the workspaces that matched when there were several
    candidates: tuple[str, ...] = ()
    policy_path: str | None = None

    @property
    def matched(self) -> bool:
        return self.workspace is not None


# --- loading --------------------------------------------------------------------------


def default_policy_path() -> Path:
    env = os.environ.get(POLICY_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "outloop" / "policy.yml"


def check_policy_text(text: str, *, file: str) -> tuple[Policy | None, list[Problem]]:
    """Validate a policy file's text; the policy when valid, and every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            return None, [Problem(file, f"invalid YAML: {problem}")]
        return None, [
            Problem(
                file,
                f"invalid YAML: {problem}",
                mark.line + 1,
                mark.column + 1,
                "check indentation and quoting near this spot",
            )
        ]
    if node is None or (isinstance(node, ScalarNode) and node.value == ""):
        return None, [Problem(file, "the policy file is empty", 1, 1, POLICY_HINT)]
    ctx = Context(file=file)
    policy = POLICY.check(node, (), ctx, extra={"path": file})
    if policy is INVALID or ctx.problems:
        return None, ctx.problems
    assert isinstance(policy, Policy)
    problems = _cross_checks(policy, node, file)
    return (None, problems) if problems else (policy, [])


def load_policy(path: Path) -> Policy:
    """Read and validate the policy at ``path``; :class:`ConfigError` for any problem."""
    shown = str(path)
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(shown, "no such policy file", hint=POLICY_HINT)]) from None
    except OSError as exc:
        raise ConfigError([Problem(shown, f"cannot read: {exc.strerror}")]) from None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            [
                Problem(
                    shown,
                    "the policy file is writable by other users, who could grant themselves your keys",
                    hint=f"chmod go-w {shown}",
                )
            ]
        )
    if hasattr(os, "geteuid") and info.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            [Problem(shown, "the policy file belongs to another user", hint="chown it to yourself")]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(shown, "not valid UTF-8", line)]) from None
    policy, problems = check_policy_text(text, file=shown)
    if policy is None:
        raise ConfigError(problems)
    return policy


def _cross_checks(policy: Policy, root: Node, file: str) -> list[Problem]:
    """Rules across workspaces, reported at the second occurrence."""
    problems: list[Problem] = []
    nodes = _workspace_nodes(root)
    pattern_owner: dict[str, str] = {}
    variable_owner: dict[str, tuple[str, str]] = {}
    for ws in policy.workspaces:
        ws_nodes = nodes.get(ws.name, {})
        for pattern in ws.repos:
            key = _pattern_key(pattern)
            other = pattern_owner.setdefault(key, ws.name)
            if other != ws.name:
                problems.append(
                    _at(
                        file,
                        ws_nodes.get(("repos", pattern)),
                        f"workspaces.{ws.name}.repos: {pattern!r} is also a repo of "
                        f"workspace `{other}`",
                        "a repo matching it would belong to two workspaces and get no secrets; "
                        "keep it in one",
                    )
                )
        seen_here: set[str] = set()
        for entry in ws.secrets:
            secret = entry.name
            if secret in seen_here:
                problems.append(
                    Problem(
                        file,
                        f"workspaces.{ws.name}.secrets: `{secret}` is listed twice",
                        entry.line,
                        entry.col,
                        "list each secret once; put its `upstreams:` and `hosts:` in one entry",
                    )
                )
                continue
            seen_here.add(secret)
            variable = env_var_name(ws.name, secret)
            owner = variable_owner.setdefault(variable, (ws.name, secret))
            if owner != (ws.name, secret):
                problems.append(
                    _at(
                        file,
                        ws_nodes.get(("secrets", secret)),
                        f"workspaces.{ws.name}.secrets: `{ws.name}/{secret}` and "
                        f"`{owner[0]}/{owner[1]}` both read the CI variable {variable}",
                        "rename a workspace or a secret so that upper-casing and "
                        "`-` → `_` tell them apart",
                    )
                )
    return problems


def _at(file: str, node: Node | None, message: str, hint: str) -> Problem:
    if node is None:
        return Problem(file, message, hint=hint)
    mark = node.start_mark
    return Problem(file, message, mark.line + 1, mark.column + 1, hint)


def _workspace_nodes(root: Node) -> dict[str, dict[tuple[str, str], Node]]:
    """For each workspace, the node of each repo pattern and secret name (for positions)."""
    out: dict[str, dict[tuple[str, str], Node]] = {}
    spaces = child(root, "workspaces")
    if not isinstance(spaces, MappingNode):
        return out
    for key, value in spaces.value:
        found: dict[tuple[str, str], Node] = {}
        for field_name in ("repos", "secrets"):
            items = child(value, field_name)
            if isinstance(items, SequenceNode):
                for item in items.value:
                    if isinstance(item, ScalarNode):
                        found.setdefault((field_name, item.value), item)
                    named = child(item, "name")
                    if isinstance(named, ScalarNode):
                        found.setdefault((field_name, named.value), item)
        out[str(key.value)] = found
    return out


# --- remotes and patterns -------------------------------------------------------------


def _expand(path: str) -> str:
    return os.path.normpath(Path(path).expanduser())


def _pattern_key(pattern: str) -> str:
    if pattern.startswith(("/", "~")):
        return _expand(pattern)
    return (normalize_remote(pattern) or pattern).lower()


@lru_cache(maxsize=512)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(out), flags)


def _local_path(url: str) -> str | None:
    text = url.strip()
    if text.startswith("file://"):
        text = text[len("file://") :]
    if text.startswith(("/", "~")):
        return _expand(text)
    return None


@dataclass(frozen=True)
class RepoIdentity:
    """What a policy pattern can match: the repo's paths and normalised remotes."""

    paths: tuple[str, ...]
    remotes: tuple[str, ...]

    @classmethod
    def of(cls, repo_root: Path, remote_urls: Sequence[str]) -> RepoIdentity:
        paths: list[str] = []
        for candidate in (str(repo_root), os.path.realpath(repo_root)):
            normal = os.path.normpath(candidate)
            if normal not in paths:
                paths.append(normal)
        remotes: list[str] = []
        for url in remote_urls:
            local = _local_path(url)
            if local is not None:
                for candidate in (local, os.path.realpath(local)):
                    if candidate not in paths:
                        paths.append(candidate)
                continue
            remote = normalize_remote(url)
            if remote is not None and remote not in remotes:
                remotes.append(remote)
        return cls(tuple(paths), tuple(remotes))

    def matches(self, pattern: str) -> str | None:
        """What ``pattern`` matched (a path or remote), or None."""
        if pattern.startswith(("/", "~")):
            expanded = _expand(pattern)
            regex = _glob(expanded, False)
            return next((p for p in self.paths if regex.fullmatch(p)), None)
        normal = normalize_remote(pattern)
        if normal is None:
            return None
        regex = _glob(normal, True)
        return next((r for r in self.remotes if regex.fullmatch(r)), None)


def match_workspace(
    repo_root: Path,
    remote_urls: Sequence[str],
    policy: Policy | None = None,
    *,
    policy_path: Path | None = None,
) -> WorkspaceMatch:
    """The one workspace whose ``repos`` match this repo, or why there is none.

    ``remote_urls`` are the URLs of every remote of the user's checkout (as
    ``git remote get-url --all <remote>`` prints them). With no ``policy``, it
    is read from ``policy_path`` (default: :func:`default_policy_path`); a
    missing file gives no workspace, an invalid one raises :class:`ConfigError`.
    """
    if policy is None:
        path = policy_path or default_policy_path()
        if not path.exists():
            return WorkspaceMatch(
                None,
                f"no policy file at {path}, so no workspace may use secrets "
                f"(create it, or point --policy / ${POLICY_ENV} at one)",
                policy_path=str(path),
            )
        _refuse_policy_inside(path, repo_root)
        policy = load_policy(path)
    identity = RepoIdentity.of(repo_root, remote_urls)
    found: dict[str, list[str]] = {}
    for ws in policy.workspaces:
        for pattern in ws.repos:
            hit = identity.matches(pattern)
            if hit is not None:
                found.setdefault(ws.name, []).append(f"{pattern} ~ {hit}")
    described = _describe(identity)
    if not found:
        return WorkspaceMatch(
            None,
            f"no workspace in {policy.path} matches this repo ({described})",
            policy_path=policy.path,
        )
    if len(found) > 1:
        names = tuple(sorted(found))
        detail = "; ".join(f"{name}: {', '.join(found[name])}" for name in names)
        return WorkspaceMatch(
            None,
            f"this repo matches {len(names)} workspaces in {policy.path} ({detail}); "
            "a repo must belong to exactly one",
            matched_by=tuple(m for name in names for m in found[name]),
            candidates=names,
            policy_path=policy.path,
        )
    (name, how), *_ = found.items()
    workspace = policy.get(name)
    return WorkspaceMatch(
        workspace,
        f"workspace `{name}` ({', '.join(how)})",
        matched_by=tuple(how),
        candidates=(name,),
        policy_path=policy.path,
    )


def _describe(identity: RepoIdentity) -> str:
    parts = [f"path {identity.paths[0]}"]
    if identity.remotes:
        parts.append("remotes " + ", ".join(identity.remotes))
    else:
        parts.append("no network remotes")
    return "; ".join(parts)


def _refuse_policy_inside(path: Path, repo_root: Path) -> None:
    policy = Path(os.path.realpath(path))
    root = Path(os.path.realpath(repo_root))
    if policy == root or root in policy.parents:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    "the policy file is inside the repository it would grant secrets to",
                    hint="keep it outside every repo (default: ~/.config/outloop/policy.yml): "
                    "a repo must not decide which keys it gets",
                )
            ]
        )


def policy_summary(policy: Policy) -> dict[str, Any]:
    """The policy as plain data (names and patterns only), e.g. for ``--json`` output."""
    return {
        "path": policy.path,
        "workspaces": {
            ws.name: {"repos": list(ws.repos), "secrets": [_entry_summary(e) for e in ws.secrets]}
            for ws in policy.workspaces
        },
    }


def _entry_summary(entry: SecretEntry) -> str | dict[str, Any]:
    """A secret as it would be written: its name, or a mapping when it says where it may go."""
    if entry.upstreams is None and entry.hosts is None and not entry.helper:
        return entry.name
    out: dict[str, Any] = {"name": entry.name}
    if entry.upstreams is not None:
        out["upstreams"] = list(entry.upstreams)
    if entry.hosts is not None:
        out["hosts"] = list(entry.hosts)
    if entry.helper:
        out["helper"] = True
    return out
