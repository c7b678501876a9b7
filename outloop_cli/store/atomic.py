"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(
    path: Path, data: bytes, *, durable: bool = True, mode: int | None = None
) -> None:
    """Replace ``path`` with ``data``; ``durable=False`` skips the fsyncs.

    The file is private to the user (0600, as ``mkstemp`` makes it) unless
    ``mode`` says otherwise: an artifact other users and CI tooling read
    (a JUnit report) asks for ``0o644``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None:
            Path(tmp).chmod(mode)
        # atomic within one directory, which mkstemp's dir= guarantees
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write_text(
    path: Path, text: str, *, durable: bool = True, mode: int | None = None
) -> None:
    atomic_write_bytes(path, text.encode(), durable=durable, mode=mode)


def atomic_write_json(
    path: Path, data: Any, *, durable: bool = True, mode: int | None = None
) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    atomic_write_text(path, text, durable=durable, mode=mode)


def _fsync_dir(directory: Path) -> None:
    # makes the rename itself durable; not possible on every platform
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def move_file(source: Path, target: Path) -> bool:
    """Move ``source`` to ``target`` in one rename; False when ``source`` is already gone.

    Whoever renames a file first has it: a claim two processes cannot both win.
    """
    try:
        source.replace(target)
    except FileNotFoundError:
        return False
    return True
