"""Which forge, host and repository a git remote URL points at, and where its API lives."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from outloop_cli.errors import UsageError

__all__ = ["RemoteRepo", "api_url_for", "parse_remote", "resolve_repo"]

# scp-like syntax: [user@]host:path (no scheme, no slash before the colon)
_SCP_RE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")


@dataclass(frozen=True)
class RemoteRepo:
    """A repository on a forge, as read from a remote URL: host and path."""

    host: str
    # "owner/name" on GitHub; "group/sub/project" on GitLab
    path: str

    @property
    def owner(self) -> str:
        return self.path.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def parse_remote(url: str) -> RemoteRepo | None:
    """``https://github.com/o/r.git``, ``git@github.com:o/r.git``, ``ssh://git@host:22/o/r``."""
    url = url.strip()
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh", "ssh+git"):
            return None
        host = parts.hostname or ""
        path = parts.path
    else:
        match = _SCP_RE.match(url)
        if not match:
            return None
        host, path = match.group(1), match.group(2)
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    if not host or path.count("/") < 1 or any(not seg for seg in path.split("/")):
        return None
    return RemoteRepo(host=host.lower(), path=path)


def resolve_repo(configured: str | None, remote_url: str | None, *, provider: str) -> RemoteRepo:
    """The repository a CI goal is about: ``goal.ci.repo`` or the ``origin`` remote."""
    parsed = parse_remote(remote_url) if remote_url else None
    if configured:
        path = configured.strip().strip("/")
        if path.count("/") < 1 or (provider == "github" and path.count("/") != 1):
            raise UsageError(
                f"goal.ci.repo `{configured}` is not owner/name",
                hint="write it like `octo-org/widgets`",
            )
        default_host = "github.com" if provider == "github" else "gitlab.com"
        return RemoteRepo(host=parsed.host if parsed else default_host, path=path)
    if parsed is None:
        raise UsageError(
            "the CI goal needs to know the repository: the `origin` remote is "
            + ("missing" if not remote_url else f"not a URL outloop understands ({remote_url})"),
            hint="set `goal.ci.repo: owner/name`, or add an `origin` remote",
        )
    if provider == "github" and parsed.path.count("/") != 1:
        raise UsageError(
            f"the origin remote {remote_url} is not a GitHub owner/name URL",
            hint="set `goal.ci.repo: owner/name`",
        )
    return parsed


def api_url_for(
    provider: str, host: str, configured: str | None, environ: Mapping[str, str]
) -> str:
    """The REST base URL: ``api_url``, then the CI runner's variable, then the host's default.

    GitHub Enterprise Server serves the REST API under ``https://HOST/api/v3``;
    Actions sets ``GITHUB_API_URL`` to it and GitLab CI sets ``CI_API_V4_URL``.
    """
    if configured:
        return configured.rstrip("/")
    if provider == "github":
        from_env = environ.get("GITHUB_API_URL")
        if from_env:
            return from_env.rstrip("/")
        if host in ("github.com", "www.github.com"):
            return "https://api.github.com"
        return f"https://{host}/api/v3"
    from_env = environ.get("CI_API_V4_URL")
    if from_env:
        return from_env.rstrip("/")
    return f"https://{host}/api/v4"


def graphql_url_for(api_url: str) -> str:
    """GitHub's GraphQL endpoint next to a REST base (``/api/v3`` → ``/api/graphql`` on GHES)."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base[: -len("/v3")] + "/graphql"
    return base + "/graphql"
