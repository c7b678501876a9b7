"""A Secret Service of its own for a throwaway session (the agency demo), never the user's.

``dbus-run-session`` gives a private D-Bus session bus; ``gnome-keyring-daemon
--unlock`` on it keeps its keyring files in a directory of the caller's and is
unlocked with a random password given on stdin. Programs pointed at it with
:func:`keyring_env` (``DBUS_SESSION_BUS_ADDRESS`` and
``PYTHON_KEYRING_BACKEND``) store and read secrets in a real, encrypted
keyring that disappears with the session: the user's own keyring and
session bus are never touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from outloop_cli.errors import CouldNotRun
from outloop_cli.process.background import Background

SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
PROGRAMS = ("dbus-run-session", "gnome-keyring-daemon")
_START_TIMEOUT = 20.0
_ADDRESS_PREFIX = "ADDR="


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if shutil.which(program) is None]


class PrivateSecretService:
    """A running private Secret Service; stop it (or leave the ``with``) to end it."""

    def __init__(self, home: Path) -> None:
        missing = missing_programs()
        if missing:
            raise CouldNotRun(
                f"no private Secret Service: {', '.join(missing)} not installed",
                hint="apt install dbus gnome-keyring (or use CI variables)",
            )
        runtime = home / "run"
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_RUNTIME_DIR": str(runtime),
        }
        script = (
            f'echo "{_ADDRESS_PREFIX}$DBUS_SESSION_BUS_ADDRESS"; '
            "exec gnome-keyring-daemon --foreground --unlock --components=secrets"
        )
        self._log = home / "secret-service.log"
        self._daemon = Background(
            ["dbus-run-session", "--", "sh", "-c", script], cwd=home, env=env, log_path=self._log
        )
        try:
            # --unlock reads the new login keyring's password from stdin, up to EOF
            self._daemon.send(secrets.token_urlsafe(24).encode())
            self.address = self._daemon.wait_for(
                self._address, timeout=_START_TIMEOUT, what="printing its bus address"
            )
            self._daemon.wait_for(
                self._secrets_on_bus, timeout=_START_TIMEOUT, what="serving org.freedesktop.secrets"
            )
        except BaseException:
            self._daemon.stop()
            raise

    def keyring_env(self) -> dict[str, str]:
        """What a program needs in its environment to use this Secret Service."""
        return {
            "DBUS_SESSION_BUS_ADDRESS": self.address,
            "PYTHON_KEYRING_BACKEND": SECRET_SERVICE_BACKEND,
        }

    def stop(self) -> None:
        self._daemon.stop()

    def __enter__(self) -> PrivateSecretService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _address(self) -> str | None:
        try:
            text = self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(_ADDRESS_PREFIX) and len(line) > len(_ADDRESS_PREFIX):
                return line[len(_ADDRESS_PREFIX) :].strip()
        return None

    def _secrets_on_bus(self) -> bool | None:
        # jeepney comes with keyring on Linux (through SecretStorage); it has no type hints
        from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]
        from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

        bus = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
        )
        try:
            with open_dbus_connection(bus=self.address) as conn:
                reply = conn.send_and_get_reply(
                    new_method_call(bus, "NameHasOwner", "s", ("org.freedesktop.secrets",))
                )
        except OSError:
            return None
        return True if reply.body[0] else None
