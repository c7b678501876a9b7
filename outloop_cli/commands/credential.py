"""``outloop credential``: git's credential helper, and short-lived grants for ``via: helper``.

Both ask the run's broker over its socket, with the capability found in the
environment the run gave git or the agent. Outside a run there is nothing to
ask, and the helper simply declines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from outloop_cli.credentials import broker_wire, git_helper
from outloop_cli.errors import CouldNotRun

HelperAnswer = git_helper.HelperAnswer


def helper(operation: str, stdin: bytes, env: Mapping[str, str]) -> HelperAnswer:
    """Answer one git credential helper call (``get``, ``store``, ``erase`` or other)."""
    return git_helper.answer(operation, stdin, env)


@dataclass(frozen=True)
class Grant:
    """A credential's raw value for ``via: helper``, as the run's broker hands it out."""

    name: str
    value: str
    # Unix time after which the run no longer vouches for this grant
    expires: int


def token(name: str, env: Mapping[str, str]) -> Grant:
    """The raw value of credential ``name`` (``via: helper``), if the run's capability allows it."""
    socket_path = env.get(broker_wire.ENV_SOCKET)
    capability = env.get(broker_wire.ENV_CAPABILITY)
    if not socket_path or not capability:
        raise CouldNotRun(
            "no outloop run granted credentials to this process",
            hint="`outloop credential token` works inside a run whose loop asks for "
            f"`{name}` with `via: helper`",
        )
    try:
        reply = broker_wire.ask(
            socket_path, {"op": "token", "capability": capability, "name": name}
        )
    except broker_wire.BrokerUnavailable as exc:
        raise CouldNotRun(f"no credential `{name}`: {exc}", hint="the run may have ended") from None
    if not reply.get("ok"):
        reason = str(reply.get("reason", "refused"))
        raise CouldNotRun(
            f"credential `{name}` refused: {reason}",
            hint="the loop must ask for it with `via: helper` and the policy must grant it",
        )
    return Grant(name, str(reply["password"]), int(reply["expires"]))
