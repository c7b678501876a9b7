"""Where loop files live: ``.outloop/*.yml`` (and ``*.yaml``) at the repo root."""

from __future__ import annotations

from pathlib import Path

from outloop_cli.config.loader import LOOP_SUFFIXES

LOOP_DIR = ".outloop"


def find_loop_files(repo_root: Path) -> list[Path]:
    """Loop files in the working tree, sorted by name; hidden and non-YAML files are skipped."""
    folder = repo_root / LOOP_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix in LOOP_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def loop_file_candidates(name: str) -> tuple[str, ...]:
    """Repo-relative paths a loop called ``name`` may live at, preferred first."""
    return tuple(f"{LOOP_DIR}/{name}{suffix}" for suffix in LOOP_SUFFIXES)
