"""Where outloop keeps things outside the user's work tree (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    # the XDG spec says relative values are invalid and must be ignored
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / fallback


def state_home() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "outloop"


def config_home() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "outloop"


def data_home() -> Path:
    """The user's data directory (keyring files live under it), not outloop's own."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def cache_home() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "outloop"


def repo_key(repo_root: Path, common_dir: Path) -> str:
    """A stable, readable folder name for one repository: ``<name>-<hash of its git dir>``."""
    # imported here: loading OpenSSL's hashes costs `outloop status` a tenth of its start
    import hashlib

    digest = hashlib.sha256(str(common_dir.resolve()).encode()).hexdigest()[:10]
    return f"{repo_root.name}-{digest}"


def worktrees_root(repo_root: Path, common_dir: Path) -> Path:
    return state_home() / "worktrees" / repo_key(repo_root, common_dir)


def runs_root(common_dir: Path) -> Path:
    return common_dir / "outloop" / "runs"
