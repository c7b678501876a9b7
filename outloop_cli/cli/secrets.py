"""CLI commands: secrets (being built; see the open issues)."""

from __future__ import annotations

from outloop_cli.cli.registry import CommandSet

_commands = CommandSet()
register = _commands.register
