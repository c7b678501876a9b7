"""GitHub App credentials → a short-lived installation token, narrowed to one repository.

The JWT is signed with ``cryptography`` directly rather than PyJWT: RS256 is
a dozen lines (two base64url segments and a PKCS#1 v1.5 SHA-256 signature),
``cryptography`` is already installed with ``keyring`` on Linux (through
SecretStorage), and PyJWT would itself need ``cryptography`` for RS256 — one
dependency fewer, nothing gained by the wrapper.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from outloop_cli.errors import UsageError
from outloop_cli.forges.http import ForgeClient, ForgeError

__all__ = [
    "AppCredentials",
    "InstallationToken",
    "app_jwt",
    "mint_installation_token",
    "revoke_installation_token",
]

# GitHub accepts at most 10 minutes; the clock of the machine may be a little off,
# so the token is dated a minute back and expires 9 minutes ahead
_JWT_BACKDATE = 60
_JWT_LIFETIME = 9 * 60


@dataclass(frozen=True)
class AppCredentials:
    """A GitHub App's id and private key, and the installation to mint tokens for."""

    # the App's numeric id or its client id (both are accepted as `iss`)
    app_id: str
    private_key_pem: str
    installation_id: int | None = None

    def __repr__(self) -> str:
        return f"AppCredentials(app_id={self.app_id!r}, installation_id={self.installation_id!r})"


@dataclass(frozen=True)
class InstallationToken:
    """A minted installation token with its expiry, permissions and repositories."""

    token: str
    expires_at: float
    permissions: Mapping[str, str]
    repositories: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"InstallationToken(expires_at={self.expires_at!r}, repositories={self.repositories!r})"
        )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def app_jwt(credentials: AppCredentials, *, now: float | None = None) -> str:
    """An RS256 JWT that authenticates as the App (``iss``) for a few minutes."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    issued = int(time.time() if now is None else now)
    header = {"alg": "RS256", "typ": "JWT"}
    payload = {
        "iat": issued - _JWT_BACKDATE,
        "exp": issued + _JWT_LIFETIME,
        "iss": credentials.app_id,
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(payload, separators=(",", ":")).encode())
    )
    try:
        key = serialization.load_pem_private_key(
            credentials.private_key_pem.encode(), password=None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # the key's bytes never go into the message
        raise UsageError(
            "the GitHub App private key in the `github` secret is not a PEM RSA private key",
            hint="store the .pem file GitHub gave you, unencrypted, as `private_key`",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UsageError(
            "the GitHub App private key is not an RSA key",
            hint="GitHub Apps sign with RS256: use the .pem that GitHub generated",
        )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


def mint_installation_token(
    client: ForgeClient,
    credentials: AppCredentials,
    *,
    owner: str,
    repo: str,
    permissions: Mapping[str, str],
) -> InstallationToken:
    """``POST /app/installations/{id}/access_tokens`` for one repository and the given permissions.

    ``client`` must not carry other auth: the App's JWT is the credential here.
    The installation is looked up from the repository when the secret does not name it.
    """
    jwt = app_jwt(credentials)
    app_client = client.with_auth({"Authorization": f"Bearer {jwt}"})
    installation = credentials.installation_id
    if installation is None:
        found = app_client.request("GET", f"/repos/{owner}/{repo}/installation").json()
        installation = int(found["id"])
    response = app_client.request(
        "POST",
        f"/app/installations/{installation}/access_tokens",
        json_body={"repositories": [repo], "permissions": dict(permissions)},
        ok=(201,),
    )
    data = response.json()
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise ForgeError("GitHub did not return an installation token", status=response.status)
    return InstallationToken(
        token=token,
        expires_at=_parse_time(data.get("expires_at")),
        permissions=dict(data.get("permissions") or {}),
        repositories=tuple(r.get("full_name", "") for r in data.get("repositories") or []),
    )


def revoke_installation_token(client: ForgeClient, token: str) -> None:
    """``DELETE /installation/token``, authenticated with the token being revoked."""
    client.with_auth({"Authorization": f"Bearer {token}"}).request(
        "DELETE", "/installation/token", ok=(204,)
    )


def _parse_time(value: object) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    # GitHub's installation tokens live one hour
    return time.time() + 3600
