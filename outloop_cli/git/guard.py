"""Git configuration and hooks outside the worktree, guarded across an agent's turn."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.git.worktree import Worktree


@dataclass
class ConfigGuard:
    """Git configuration and hooks outside the worktree, as they were when the run began.

    An agent that is not sandboxed can write ``.git/config`` (``core.fsmonitor``,
    ``filter.*``, ``remote.*.url``, ``include.path``...), the user's global git
    config or ``.git/hooks``: code that outloop's next git command, or the
    user's next commit, would run. The engine checks after each agent turn,
    puts the files back and stops the run when anything changed.
    """

    files: dict[Path, bytes | None]
    hook_dirs: dict[Path, dict[str, bytes]]

    @classmethod
    def capture(cls, worktree: Worktree, common_dir: Path) -> ConfigGuard:
        own = worktree.dirs.own
        home = Path(os.environ.get("HOME", "~")).expanduser()
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        candidates = [
            # the user's repository: config, attributes and alternates its next git reads
            common_dir / "config",
            common_dir / "config.worktree",
            common_dir / "info" / "attributes",
            common_dir / "objects" / "info" / "alternates",
            home / ".gitconfig",
            Path(xdg) / "git" / "config",
            # outloop's own git dir for the run: the only config its git reads
            own / "config",
            own / "info" / "attributes",
            own / "objects" / "info" / "alternates",
            own / "HEAD",
            # the agent's git link: outloop's git never follows it, but a changed one
            # is tampering (the agent's git would show it someone else's repository)
            worktree.path / ".git",
        ]
        files = {path: _read_or_none(path) for path in dict.fromkeys(candidates)}
        hooks = {
            common_dir / "hooks": _read_dir(common_dir / "hooks"),
            own / "hooks": _read_dir(own / "hooks"),
        }
        return cls(files, hooks)

    def changed(self) -> list[Path]:
        found = [path for path, data in self.files.items() if _read_or_none(path) != data]
        found += [d for d, entries in self.hook_dirs.items() if _read_dir(d) != entries]
        return found

    def restore(self) -> None:
        for path, data in self.files.items():
            if _read_or_none(path) == data:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            if data is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        for directory, entries in self.hook_dirs.items():
            current = _read_dir(directory)
            for name in current.keys() - entries.keys():
                (directory / name).unlink(missing_ok=True)
            for name, data in entries.items():
                if current.get(name) != data:
                    (directory / name).write_bytes(data)


_A_DIRECTORY = b"\0directory"


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        return _A_DIRECTORY


def _read_dir(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
