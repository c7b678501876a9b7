"""The secrets store: the OS keyring, and an index of the names it holds.

Each secret is one keyring entry: service ``outloop``, user
``<workspace>/<name>`` (``client-a/openai`` and ``client-b/openai`` are
different keys).

The keyring is only as good as its backend. A Secret Service (GNOME Keyring,
KWallet), macOS Keychain or Windows Credential Locker keeps values encrypted
and out of reach of a plain file read; ``keyrings.alt``'s plaintext file does
not, and the ``fail``/``null`` backends (or a chainer with nothing to chain)
lose what they are given. So the backend is classified before any use:
known-good backends are used, unusable ones are always refused, and anything
else (plaintext, or a backend outloop does not know) only with an explicit
opt-in: ``OUTLOOP_ALLOW_INSECURE_KEYRING=1`` or ``--allow-insecure-keyring``.

The keyring API cannot enumerate entries, so ``outloop secrets list`` reads a
names-only index: ``$XDG_DATA_HOME/outloop/secrets-index.json`` (mode 0600).
It lives next to the data it indexes (GNOME Keyring keeps its files under
``$XDG_DATA_HOME/keyrings``), not in the config dir the user edits and may
publish as dotfiles, and not in the keyring itself, where it would need an
unlock just to list names and would race between concurrent ``set``s. It
holds names and times only, never a value; ``list`` checks each name against
the keyring so an entry removed behind outloop's back shows as missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from outloop_cli.config.values import CREDENTIAL_NAME_PATTERN
from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.store.atomic import atomic_write_json

SERVICE = "outloop"
ALLOW_INSECURE_ENV = "OUTLOOP_ALLOW_INSECURE_KEYRING"
INDEX_NAME = "secrets-index.json"
_NAME_RE = re.compile(CREDENTIAL_NAME_PATTERN)
_TRUE = ("1", "true", "yes", "on")

# Backends that keep values encrypted and behind the OS's own access control.
SECURE_BACKENDS = frozenset(
    {
        "keyring.backends.SecretService.Keyring",
        "keyring.backends.libsecret.Keyring",
        "keyring.backends.kwallet.DBusKeyring",
        "keyring.backends.kwallet.DBusKeyringKWallet4",
        "keyring.backends.macOS.Keyring",
        "keyring.backends.Windows.WinVaultKeyring",
    }
)
# Backends that cannot keep a value at all: refused even with the opt-in.
UNUSABLE_BACKENDS = frozenset({"keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"})
# Known to write values to disk readable by anything running as the user.
PLAINTEXT_BACKENDS = frozenset(
    {
        "keyrings.alt.file.PlaintextKeyring",
        "keyrings.alt.Windows.RegistryKeyring",
        "keyrings.alt.pyfs.PlaintextKeyring",
    }
)

KEYRING_HINT = (
    "run a Secret Service (e.g. gnome-keyring-daemon) in your session, or choose a backend "
    "with PYTHON_KEYRING_BACKEND; in CI, pass secrets as OUTLOOP_SECRET_<WORKSPACE>_<NAME> "
    "variables instead"
)


class BackendKind(Enum):
    SECURE = "secure"
    PLAINTEXT = "plaintext"
    UNKNOWN = "unknown"
    UNUSABLE = "unusable"


class KeyringRefused(CouldNotRun):
    """The keyring backend is missing, unusable, or not safe enough without an opt-in."""


class KeyringFailed(CouldNotRun):
    """The backend was fine but an operation failed (locked, D-Bus gone, ...)."""


@dataclass(frozen=True)
class SecretRef:
    """A secret's address: never its value."""

    workspace: str
    name: str

    @property
    def username(self) -> str:
        return f"{self.workspace}/{self.name}"

    def __str__(self) -> str:
        return self.username


@dataclass(frozen=True)
class IndexEntry:
    """One stored secret as the index knows it: workspace, name, when it changed, whether it is there."""

    workspace: str
    name: str
    updated: str
    # whether the keyring holds a value for it right now (None: not checked)
    present: bool | None = None

    @property
    def ref(self) -> SecretRef:
        return SecretRef(self.workspace, self.name)


def check_name(text: str, what: str) -> str:
    """A workspace or secret name: the same rule as credential names in loop files."""
    if not _NAME_RE.fullmatch(text):
        raise UsageError(
            f"{text!r} is not a valid {what} name",
            hint="use lowercase letters, digits, '_' and '-', starting with a letter or digit",
        )
    return text


def make_ref(workspace: str, name: str) -> SecretRef:
    return SecretRef(check_name(workspace, "workspace"), check_name(name, "secret"))


def backend_id(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def classify(backend: Any) -> BackendKind:
    ident = backend_id(backend)
    if ident in SECURE_BACKENDS:
        return BackendKind.SECURE
    if ident in UNUSABLE_BACKENDS:
        return BackendKind.UNUSABLE
    if ident in PLAINTEXT_BACKENDS:
        return BackendKind.PLAINTEXT
    return BackendKind.UNKNOWN


def insecure_allowed_by_env(env: dict[str, str] | None = None) -> bool:
    source = os.environ if env is None else env
    return source.get(ALLOW_INSECURE_ENV, "").strip().lower() in _TRUE


def _load_backend() -> Any:
    """The backend keyring itself would pick, built fresh (keyring caches it globally).

    A chainer is resolved to the backend it writes to, so that reads come
    from the same place as writes and never from a lower-priority plaintext
    store that happens to be installed too.
    """
    import keyring.core
    from keyring.backends import chainer

    try:
        backend = keyring.core._detect_backend()
    except Exception as exc:  # keyring raises RuntimeError, ImportError, ... for a bad choice
        raise KeyringRefused(
            f"the configured keyring backend cannot be loaded: {exc}", hint=KEYRING_HINT
        ) from None
    if isinstance(backend, chainer.ChainerBackend):
        chained = list(backend.backends)
        if not chained:
            raise KeyringRefused("no keyring backend is available", hint=KEYRING_HINT)
        backend = chained[0]
    return backend


def open_backend(*, allow_insecure: bool | None = None) -> Any:
    """The keyring backend to use, or :class:`KeyringRefused` saying why not."""
    backend = _load_backend()
    kind = classify(backend)
    ident = backend_id(backend)
    if kind is BackendKind.SECURE:
        return backend
    if kind is BackendKind.UNUSABLE:
        raise KeyringRefused(
            f"no usable keyring: the backend is {ident}, which cannot store secrets",
            hint=KEYRING_HINT,
        )
    allowed = insecure_allowed_by_env() if allow_insecure is None else allow_insecure
    if allowed:
        return backend
    why = (
        "keeps secrets in a plaintext file"
        if kind is BackendKind.PLAINTEXT
        else "is not one outloop knows to keep secrets encrypted"
    )
    raise KeyringRefused(
        f"refusing the keyring backend {ident}: it {why}",
        hint=f"{KEYRING_HINT}; to use it anyway, set {ALLOW_INSECURE_ENV}=1 "
        "or pass --allow-insecure-keyring",
    )


def data_home() -> Path:
    value = os.environ.get("XDG_DATA_HOME")
    if value and Path(value).is_absolute():
        return Path(value) / "outloop"
    return Path.home() / ".local" / "share" / "outloop"


class SecretStore:
    """Secrets in the keyring plus their names in the index. Values go in and out, never logged."""

    def __init__(self, backend: Any, index_dir: Path | None = None) -> None:
        self.backend = backend
        self.index_dir = index_dir or data_home()

    @classmethod
    def open(cls, *, allow_insecure: bool | None = None) -> SecretStore:
        return cls(open_backend(allow_insecure=allow_insecure))

    @property
    def backend_name(self) -> str:
        return backend_id(self.backend)

    # --- values ----------------------------------------------------------------

    def get(self, ref: SecretRef) -> str | None:
        with self._errors("read", ref):
            value = self.backend.get_password(SERVICE, ref.username)
        return value if isinstance(value, str) and value else None

    def set(self, ref: SecretRef, value: str) -> None:
        if not value:
            raise UsageError(f"refusing to store an empty value for {ref}")
        with self._errors("store", ref, value):
            self.backend.set_password(SERVICE, ref.username, value)
        self._update_index(add=ref)

    def delete(self, ref: SecretRef) -> bool:
        """Remove the value and its index entry; False when neither existed."""
        import keyring.errors

        existed = True
        with self._errors("remove", ref):
            try:
                self.backend.delete_password(SERVICE, ref.username)
            except keyring.errors.PasswordDeleteError:
                existed = False
        indexed = self._update_index(remove=ref)
        return existed or indexed

    # --- names -----------------------------------------------------------------

    def entries(self, *, check: bool = True) -> list[IndexEntry]:
        entries = self._read_index()
        if not check:
            return entries
        return [
            IndexEntry(e.workspace, e.name, e.updated, self.get(e.ref) is not None) for e in entries
        ]

    @property
    def index_path(self) -> Path:
        return self.index_dir / INDEX_NAME

    def _read_index(self) -> list[IndexEntry]:
        try:
            raw = json.loads(self.index_path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise CouldNotRun(
                f"cannot read the secrets index {self.index_path}: {exc}",
                hint="it holds names only; delete it and `outloop secrets set` again",
            ) from None
        entries = []
        for item in raw.get("secrets", []) if isinstance(raw, dict) else []:
            if isinstance(item, dict) and {"workspace", "name"} <= item.keys():
                entries.append(
                    IndexEntry(str(item["workspace"]), str(item["name"]), str(item.get("updated")))
                )
        return sorted(entries, key=lambda e: (e.workspace, e.name))

    def _update_index(
        self, *, add: SecretRef | None = None, remove: SecretRef | None = None
    ) -> bool:
        """Add or remove one name under a lock; True when ``remove`` found it."""
        with self._index_lock():
            entries = {e.ref: e for e in self._read_index()}
            found = remove in entries if remove else False
            if remove is not None:
                entries.pop(remove, None)
            if add is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                entries[add] = IndexEntry(add.workspace, add.name, stamp)
            data = {
                "version": 1,
                "note": "names of the secrets outloop stored in the keyring; never values",
                "secrets": [
                    {"workspace": e.workspace, "name": e.name, "updated": e.updated}
                    for e in sorted(entries.values(), key=lambda e: (e.workspace, e.name))
                ],
            }
            atomic_write_json(self.index_path, data)
        return found

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        self.index_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.index_dir / (INDEX_NAME + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _errors(self, action: str, ref: SecretRef, value: str | None = None) -> Iterator[None]:
        """Keyring errors as outloop errors that name the entry, never a value.

        ``from None``: the backend's own exception (and its traceback's locals,
        which hold the value being stored) is not kept on ours.
        """
        import keyring.errors

        failure: str | None = None
        hint = KEYRING_HINT
        try:
            yield
        except keyring.errors.KeyringLocked:
            failure = "the keyring is locked"
            hint = "unlock it (log in to the desktop session, or `gnome-keyring-daemon --unlock`)"
        except keyring.errors.KeyringError as exc:
            failure = f"{self.backend_name}: {exc}"
        except Exception as exc:  # D-Bus and backend-specific failures have no common base
            failure = f"{self.backend_name}: {type(exc).__name__}: {exc}"
        if failure is None:
            return
        if value:
            failure = failure.replace(value, "***")
        raise KeyringFailed(f"cannot {action} {ref} in the keyring: {failure}", hint=hint)
