"""The agency demo's CRM keys: made up per client, or taken from CI variables when given.

A key is random and carries its client's name (``crm-acme-live-…``) so that a
leak is recognisable in any file. One handed over as
``OUTLOOP_SECRET_<CLIENT>_CRM`` (read and scrubbed at start-up by
:mod:`~outloop_cli.credentials.ci_env`) is used as given: that is how a test,
or an agency's CI, chooses the keys.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from outloop_cli.credentials.ci_env import ci_secret, env_var_name

SECRET_NAME = "crm"


@dataclass(frozen=True)
class DemoKey:
    """The demo's key for one client, and where its value came from."""

    client: str
    value: str = field(repr=False)
    # where it came from: "generated" or the CI variable's name
    source: str

    @property
    def ci_variable(self) -> str:
        return env_var_name(self.client, SECRET_NAME)


def demo_key(client: str) -> DemoKey:
    given = ci_secret(client, SECRET_NAME)
    if given:
        return DemoKey(client, given, env_var_name(client, SECRET_NAME))
    return DemoKey(client, f"crm-{client}-live-{secrets.token_urlsafe(24)}", "generated")
