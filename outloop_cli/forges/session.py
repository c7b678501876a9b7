"""One run's authenticated access to one repository on GitHub or GitLab.

Opened by the engine when a loop talks to a forge (a CI goal, ``push``,
``pr``), closed when the run ends. The ``github`` (or ``gitlab``) secret is
either a token (a PAT, fine-grained or classic) or, for GitHub, a GitHub App
as JSON::

    {"app_id": "123456", "private_key": "-----BEGIN RSA PRIVATE KEY-----…",
     "installation_id": 987654}

An App's installation token is minted per run, narrowed to the one
repository and the permissions the run needs, and revoked on ``close``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from outloop_cli.errors import UsageError
from outloop_cli.forges.github_app import (
    AppCredentials,
    InstallationToken,
    mint_installation_token,
    revoke_installation_token,
)
from outloop_cli.forges.http import ForgeClient, ForgeError
from outloop_cli.forges.remote import RemoteRepo, api_url_for, resolve_repo

__all__ = [
    "ACTIONS_TOKEN_WARNING",
    "MAYBE_ACTIONS_TOKEN_WARNING",
    "ForgeSession",
    "open_forge_session",
    "parse_github_secret",
]

GITHUB_ACCEPT = "application/vnd.github+json"
GITHUB_API_VERSION = "2022-11-28"
# permissions of the installation token: read CI results and logs, push the branch
CI_PERMISSIONS = {"checks": "read", "statuses": "read", "actions": "read", "contents": "write"}
PR_PERMISSIONS = {"pull_requests": "write", "contents": "write"}
# re-mint an App token this long before it expires
_REFRESH_MARGIN = 5 * 60

ACTIONS_TOKEN_WARNING = (
    "the `github` token is the GITHUB_TOKEN of this GitHub Actions job: pushes made with it "
    "do not start new workflow runs, so CI will never report on outloop's commits. "
    "Store a GitHub App (recommended) or a fine-grained PAT as the `github` secret instead."
)
MAYBE_ACTIONS_TOKEN_WARNING = (
    "the `github` token is an installation token (ghs_…) inside GitHub Actions; if it is the "
    "job's GITHUB_TOKEN, pushes made with it do not start new workflow runs and CI will never "
    "report on outloop's commits. Use a GitHub App's own token or a fine-grained PAT."
)


@dataclass
class ForgeSession:
    """An authenticated client for one repository on one forge, holding its token out of sight."""

    provider: str
    api_url: str
    repo: RemoteRepo
    client: ForgeClient
    # "token" (PAT or given token) or "app" (minted installation token)
    token_kind: str
    warnings: list[str] = field(default_factory=list)
    _token: str = field(default="", repr=False)
    _app: AppCredentials | None = field(default=None, repr=False)
    _minted: InstallationToken | None = field(default=None, repr=False)
    _permissions: Mapping[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = False

    # -- tokens ---------------------------------------------------------------

    def token(self) -> str:
        """The token to use now; an App token is re-minted shortly before it expires."""
        if self.closed:
            raise ForgeError("the forge session of this run is closed")
        with self._lock:
            if self._app is not None and (
                self._minted is None or self._minted.expires_at - time.time() < _REFRESH_MARGIN
            ):
                self._mint()
            return self._token

    def _mint(self) -> None:
        assert self._app is not None
        if self._minted is not None:
            self._revoke_quietly(self._minted.token)
        self._minted = mint_installation_token(
            self.client,
            self._app,
            owner=self.repo.owner,
            repo=self.repo.name,
            permissions=self._permissions,
        )
        self._token = self._minted.token

    def auth_headers(self) -> Mapping[str, str]:
        if self.provider == "gitlab":
            return {"PRIVATE-TOKEN": self.token()}
        return {"Authorization": f"Bearer {self.token()}"}

    @property
    def git_username(self) -> str:
        # GitHub takes any token as the password of `x-access-token`; GitLab of `oauth2`
        return "oauth2" if self.provider == "gitlab" else "x-access-token"

    def git_env(self, remote_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Env for outloop's own push to ``remote_url`` with this session's token (see ``push``)."""
        from outloop_cli.git.push import token_auth_env

        return token_auth_env(remote_url, self.token(), username=self.git_username, base=base)

    def secret_values(self) -> list[str]:
        """Values to mask in anything outloop writes (the tokens in use)."""
        return [t for t in (self._token,) if t]

    def close(self) -> None:
        """Revoke a minted App token; a PAT stays as it is (it is the user's)."""
        if self.closed:
            return
        with self._lock:
            if self._minted is not None:
                self._revoke_quietly(self._minted.token)
                self._minted = None
            self._token = ""
            self.closed = True

    def _revoke_quietly(self, token: str) -> None:
        try:
            revoke_installation_token(self.client, token)
        except ForgeError as exc:
            # it expires within the hour anyway; say so rather than fail the run's end
            self.warnings.append(f"could not revoke the GitHub App token: {exc.message}")

    def __enter__(self) -> ForgeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_github_secret(value: str) -> str | AppCredentials:
    """A token string, or App credentials from a JSON object. Never echoes the value."""
    text = value.strip()
    if not text.startswith("{"):
        if not text or any(ch.isspace() for ch in text):
            raise UsageError(
                "the `github` secret is neither a token nor GitHub App JSON",
                hint='store a token, or {"app_id": …, "private_key": "…", "installation_id": …}',
            )
        return text
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(
            "the `github` secret starts with `{` but is not valid JSON",
            hint='GitHub App credentials: {"app_id": "…", "private_key": "-----BEGIN…", "installation_id": 123}',
        ) from None
    if not isinstance(data, dict):
        raise UsageError("the `github` secret's JSON is not an object")
    app_id = data.get("app_id") or data.get("client_id")
    key = data.get("private_key")
    if not app_id or not isinstance(key, str):
        raise UsageError(
            "the `github` secret's JSON needs `app_id` (or `client_id`) and `private_key`",
            hint="add the fields, or store a plain token instead",
        )
    installation = data.get("installation_id")
    if installation is not None and not str(installation).isdigit():
        raise UsageError("the `github` secret's `installation_id` is not a number")
    return AppCredentials(
        app_id=str(app_id),
        private_key_pem=key,
        installation_id=int(installation) if installation is not None else None,
    )


def _actions_token_warning(token: str, environ: Mapping[str, str]) -> str | None:
    """Why pushes with this token may never start CI, if they may not."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return None
    if token in (environ.get("GITHUB_TOKEN"), environ.get("INPUT_GITHUB-TOKEN")):
        return ACTIONS_TOKEN_WARNING
    # GITHUB_TOKEN is an installation token; so are tokens minted from an App, which do work
    if token.startswith("ghs_"):
        return MAYBE_ACTIONS_TOKEN_WARNING
    return None


def open_forge_session(
    *,
    provider: str,
    secret: str,
    remote_url: str | None,
    repo: str | None = None,
    api_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    want_pr: bool = False,
    cancel: threading.Event | None = None,
    client_options: Mapping[str, float] | None = None,
) -> ForgeSession:
    """Resolve repo and API URL, check the secret's shape and, for an App, mint its token."""
    import os

    env = os.environ if environ is None else environ
    if provider not in ("github", "gitlab"):
        raise UsageError(f"unknown CI provider `{provider}`", hint="use github or gitlab")
    remote = resolve_repo(repo, remote_url, provider=provider)
    base = api_url_for(provider, remote.host, api_url, env)
    options = dict(client_options or {})
    holder: list[ForgeSession] = []

    def auth() -> Mapping[str, str]:
        return holder[0].auth_headers()

    if provider == "github":
        client = ForgeClient(
            base,
            auth=auth,
            accept=GITHUB_ACCEPT,
            extra_headers={"X-GitHub-Api-Version": GITHUB_API_VERSION},
            cancel=cancel,
            **options,  # type: ignore[arg-type]
        )
        parsed = parse_github_secret(secret)
    else:
        client = ForgeClient(base, auth=auth, cancel=cancel, **options)  # type: ignore[arg-type]
        parsed = secret.strip()
        if not parsed or "\n" in parsed:
            raise UsageError("the `gitlab` secret is not a token")
    permissions = dict(CI_PERMISSIONS)
    if want_pr:
        permissions.update(PR_PERMISSIONS)
    if isinstance(parsed, AppCredentials):
        session = ForgeSession(
            provider, base, remote, client, "app", _app=parsed, _permissions=permissions
        )
        holder.append(session)
        session.token()
    else:
        session = ForgeSession(provider, base, remote, client, "token", _token=parsed)
        holder.append(session)
        warning = _actions_token_warning(parsed, env) if provider == "github" else None
        if warning is not None:
            session.warnings.append(warning)
    return session
