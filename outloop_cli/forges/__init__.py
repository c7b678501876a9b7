"""Talking to forges (GitHub, GitLab): HTTP client, tokens, and the calls outloop makes."""

from outloop_cli.forges.http import ForgeAuthError, ForgeClient, ForgeError, RateLimited
from outloop_cli.forges.session import ForgeSession, open_forge_session

__all__ = [
    "ForgeAuthError",
    "ForgeClient",
    "ForgeError",
    "ForgeSession",
    "RateLimited",
    "open_forge_session",
]
