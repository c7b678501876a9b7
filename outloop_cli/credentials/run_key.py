"""Each run's own key: what lets outloop tell its records from ones rewritten behind its back.

A run's audit log and record live in the repository's git directory, where
an agent running outside a sandbox, as the same user, can rewrite them and
recompute any plain hash chain. So every audit line also carries a MAC made
with a key of the run's that is never in the repository, the worktree, the
agent's environment or any output: 32 random bytes in
``$XDG_STATE_HOME/outloop/run-keys/<run>.key`` (0600, in a 0700 directory).
The sandbox hides that directory; without a sandbox a process of the same
user can still read it, which ``docs/security.md`` says plainly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from outloop_cli.paths import state_home
from outloop_cli.store.atomic import atomic_write_bytes

__all__ = ["RunKey", "forget_run_key", "load_run_key", "new_run_key", "run_keys_dir"]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY_BYTES = 32


class RunKey:
    """Signs and checks a run's records; holds the key bytes and never shows them."""

    def __init__(self, run_id: str, key: bytes) -> None:
        self.run_id = run_id
        self._key = key

    def mac(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(data), mac)

    def verify_all(self, bodies: Sequence[bytes], macs: Sequence[bytes]) -> bool:
        """Whether each body's MAC is the hex MAC given for it: :meth:`verify` for a whole log.

        HMAC-SHA256 (RFC 2104) from SHA-256 states that took the padded key
        once, copied per line (a fresh ``hmac`` object per line sets the key up
        a million times for a million lines), and one constant-time comparison
        of all MACs at once.
        """
        if len(bodies) != len(macs):
            return False
        inner, outer = self._pads()
        start_inner, start_outer = inner.copy, outer.copy
        digests = []
        for body in bodies:
            digest = start_inner()
            digest.update(body)
            final = start_outer()
            final.update(digest.digest())
            digests.append(final.digest())
        return hmac.compare_digest(b"".join(digests).hex().encode(), b"".join(macs))

    def _pads(self) -> tuple[hashlib._Hash, hashlib._Hash]:
        block = hashlib.sha256().block_size
        key = self._key if len(self._key) <= block else hashlib.sha256(self._key).digest()
        key = key.ljust(block, b"\0")
        inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))
        return inner, outer

    def __repr__(self) -> str:
        return f"RunKey({self.run_id!r})"


def run_keys_dir() -> Path:
    return state_home() / "run-keys"


def _path(run_id: str) -> Path:
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return run_keys_dir() / f"{run_id}.key"


def new_run_key(run_id: str) -> RunKey:
    """Make and keep a fresh key for ``run_id`` (a key already kept for it is replaced)."""
    directory = run_keys_dir()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key = secrets.token_bytes(_KEY_BYTES)
    atomic_write_bytes(_path(run_id), key.hex().encode())
    return RunKey(run_id, key)


def load_run_key(run_id: str) -> RunKey | None:
    """The kept key of ``run_id``; None when there is none (or it is not one)."""
    try:
        path = _path(run_id)
        text = path.read_bytes().strip()
        info = path.stat()
    except (OSError, ValueError):
        return None
    if info.st_mode & 0o077 or (hasattr(os, "geteuid") and info.st_uid != os.geteuid()):
        return None
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return RunKey(run_id, key) if len(key) == _KEY_BYTES else None


def forget_run_key(run_id: str) -> None:
    try:
        _path(run_id).unlink(missing_ok=True)
    except ValueError:
        pass
