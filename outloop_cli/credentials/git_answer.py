"""What outloop's git credential helper answers git: the broker decides, the helper relays.

git starts the helper for every request that needs a credential (each fetch
and push, sometimes twice), so this module and everything it imports stay
light: git's protocol (``git_protocol``) and the broker's wire (``broker_wire``,
over the C parts of ``json`` and ``socket``), nothing of the CLI, typer, yaml or
dataclasses. Every grant and
refusal is decided and audited by the broker; the helper holds no policy and
passes on only what the broker gave.
"""

from __future__ import annotations

from outloop_cli.credentials import broker_wire, git_protocol

# `collections.abc` brings all of `collections` (a sixth of the helper's own start-up)
# for one annotation; type checkers still see it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_USERNAME = "x-access-token"


class HelperAnswer:
    """The helper's reply: bytes for git's stdin, and a line for git's stderr (or None)."""

    __slots__ = ("message", "stdout")

    def __init__(self, stdout: bytes, message: str | None = None) -> None:
        self.stdout = stdout
        self.message = message

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HelperAnswer):
            return NotImplemented
        return (self.stdout, self.message) == (other.stdout, other.message)

    def __hash__(self) -> int:
        return hash((self.stdout, self.message))

    def __repr__(self) -> str:
        # never the reply itself: it may hold a password
        return f"HelperAnswer(<{len(self.stdout)} bytes>, {self.message!r})"


def answer(operation: str, stdin: bytes, env: Mapping[str, str]) -> HelperAnswer:
    """What ``outloop credential <operation>`` replies to git.

    Only ``get`` answers; ``store`` and ``erase`` are accepted and ignored (the
    broker keeps nothing git could update), as is any operation git may add
    later. A ``get`` that cannot be answered declines with ``quit=1`` so git
    neither asks another helper nor prompts.
    """
    if operation != "get":
        return HelperAnswer(b"")
    try:
        request = git_protocol.parse(stdin)
    except git_protocol.BadCredentialInput as exc:
        _report_bad_input(env, str(exc))
        return HelperAnswer(git_protocol.DECLINE, f"outloop: refused: {exc}")
    socket_path = env.get(broker_wire.ENV_SOCKET)
    capability = env.get(broker_wire.ENV_CAPABILITY)
    if not socket_path or not capability:
        return HelperAnswer(
            git_protocol.DECLINE, "outloop: no credentials here (not started by an outloop run)"
        )
    query = {
        "op": "git",
        "capability": capability,
        "protocol": request.protocol,
        "host": request.host,
        "path": request.path,
    }
    try:
        reply = broker_wire.ask(socket_path, query)
    except broker_wire.BrokerUnavailable as exc:
        return HelperAnswer(git_protocol.DECLINE, f"outloop: no credentials: {exc}")
    if not reply.get("ok"):
        return HelperAnswer(
            git_protocol.DECLINE, f"outloop: refused: {reply.get('reason', 'refused')}"
        )
    attributes: dict[str, str | int] = {
        "username": request.username or str(reply.get("username") or DEFAULT_USERNAME),
        "password": str(reply["password"]),
        "password_expiry_utc": int(reply["expires"]),
    }
    try:
        return HelperAnswer(git_protocol.format_reply(attributes))
    except git_protocol.BadCredentialInput:
        return HelperAnswer(
            git_protocol.DECLINE,
            "outloop: refused: the stored secret contains a line break; store it again",
        )


def _report_bad_input(env: Mapping[str, str], why: str) -> None:
    """Tell the broker (for the audit log) that someone fed the helper a malformed request."""
    socket_path = env.get(broker_wire.ENV_SOCKET)
    capability = env.get(broker_wire.ENV_CAPABILITY)
    if not socket_path or not capability:
        return
    try:
        broker_wire.ask(
            socket_path, {"op": "bad_input", "capability": capability, "reason": why[:200]}
        )
    except broker_wire.BrokerUnavailable:
        pass
