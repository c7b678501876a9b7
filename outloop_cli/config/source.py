"""Where a loop is read from: a commit (what a run uses) or the work tree (what the user edits).

A run reads its loop only from its starting commit, so an agent cannot change
its own config; ``outloop list``, ``validate``, ``init`` and ``matrix`` look at
the files in the work tree. Both meet here: the folder, the suffixes, the
lookup order and the hints that say why a loop was not found.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.config.loader import LOOP_SUFFIXES, load_loop_bytes
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.spec import hide_userinfo
from outloop_cli.errors import ConfigError, Problem, UsageError

if TYPE_CHECKING:
    from outloop_cli.git.repo import Repository

LOOP_DIR = ".outloop"


# -- the work tree ------------------------------------------------------------


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


# -- a commit -----------------------------------------------------------------


def committed_loop_names(repo: Repository, commit: str) -> list[str]:
    """Names of the loops committed at ``commit``, sorted."""
    names = []
    for path in repo.list_files(commit, LOOP_DIR):
        name = Path(path).name
        for suffix in LOOP_SUFFIXES:
            if name.endswith(suffix):
                names.append(name[: -len(suffix)])
    return sorted(names)


def load_committed_loop(repo: Repository, commit: str, name: str) -> LoopConfig:
    """The loop ``name`` as committed at ``commit``; a missing one says what is there instead."""
    path, raw = _read_committed_loop(repo, commit, name)
    return load_loop_bytes(raw, file=f"{path}@{commit[:10]}", name=name, path=path)


def load_loop_file_at(repo: Repository, commit: str, path: str, name: str) -> LoopConfig | None:
    """The loop file at ``path`` in ``commit`` (a run's own, from its record); None when absent."""
    raw = repo.read_file(commit, path)
    if raw is None:
        return None
    return load_loop_bytes(raw, file=f"{path}@{commit[:10]}", name=name, path=path)


def read_committed_prompt(repo: Repository, commit: str, config: LoopConfig) -> str:
    """The agent's prompt: inline in the loop, or ``agent.prompt_file`` from the same commit.

    Every file the loop names must be in that commit (:func:`committed_file_problems`).
    """
    problems = committed_file_problems(repo, commit, config)
    if problems:
        raise ConfigError(problems)
    if config.agent.prompt is not None:
        return config.agent.prompt
    if config.agent.prompt_file is None:
        return ""
    raw = repo.read_file(commit, config.agent.prompt_file) or b""
    return raw.decode("utf-8", errors="replace")


def committed_files_named(config: LoopConfig) -> list[tuple[tuple[str, ...], str, str]]:
    """The files ``config`` names that a run reads from its starting commit.

    Each as (key path in the loop file, path in the commit, hint when it is missing).
    """
    wanted: list[tuple[tuple[str, ...], str, str]] = []
    if config.agent.prompt_file is not None:
        wanted.append(
            (
                ("agent", "prompt_file"),
                config.agent.prompt_file,
                "commit the prompt file, or write the task inline as `agent.prompt`",
            )
        )
    if config.goal.judge is not None:
        wanted.append(
            (
                ("goal", "judge", "spec"),
                config.goal.judge.spec,
                "commit the spec the judge reads",
            )
        )
    for cred in config.credentials:
        if cred.ca_bundle is not None:
            wanted.append(
                (("credentials", cred.name, "ca_bundle"), cred.ca_bundle, "commit the CA bundle")
            )
    return wanted


def committed_file_problems(
    repo: Repository, commit: str, config: LoopConfig, *, file: str | None = None
) -> list[Problem]:
    """The files a loop names that a run would read from ``commit`` and not find there.

    ``agent.prompt_file`` and each credential's ``ca_bundle`` are read from the
    starting commit, never from the work tree, so ``validate`` asks the same
    commit a run would use. Each problem points at the key in the loop file as
    committed (or at ``file``, the work-tree copy being validated).
    """
    wanted = committed_files_named(config)
    if not wanted:
        return []
    from outloop_cli.config.locate import locate

    problems: list[Problem] = []
    text: str | None = None
    shown = file or f"{config.path}@{commit[:10]}"
    for key_path, path, hint in wanted:
        raw = repo.read_file(commit, path)
        # a prompt and a spec are text; anything else named here is a CA bundle
        text_file = key_path[0] in ("agent", "goal")
        if raw is not None and text_file and raw.strip() and _is_utf8(raw):
            continue
        if raw is not None and not text_file and _is_pem_bundle(raw):
            continue
        if text is None:
            if file is not None:
                text = _read_text(repo.info.root / config.path)
            else:
                text = (repo.read_file(commit, config.path) or b"").decode("utf-8", "replace")
        found = locate(text, [key_path])
        line, col = (found[1], found[2]) if found else (None, None)
        if raw is None:
            what = f"`{path}` is not in commit {commit[:10]}"
        elif text_file and not _is_utf8(raw):
            what = f"`{path}` is not UTF-8 text"
            hint = "save the file as UTF-8"
        elif text_file:
            what = f"`{path}` is empty"
        else:
            what = f"`{path}` holds no PEM certificate outloop can read"
            hint = "commit the CA's certificates as PEM (-----BEGIN CERTIFICATE-----)"
        problems.append(
            Problem(
                shown,
                hide_userinfo(f"{'.'.join(key_path)}: {what}"),
                line,
                col,
                f"{hint}: a run reads it from the starting commit "
                f"({commit[:10]}), not from the work tree",
            )
        )
    return problems


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_pem_bundle(data: bytes) -> bool:
    """Whether ``data`` is CA certificates the access proxy can trust (PEM, as it loads them)."""
    import ssl

    try:
        ssl.create_default_context(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        return False
    return True


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return ""


def _read_committed_loop(repo: Repository, commit: str, name: str) -> tuple[str, bytes]:
    candidates = loop_file_candidates(name)
    for path in candidates:
        raw = repo.read_file(commit, path)
        if raw is not None:
            return path, raw
    known = committed_loop_names(repo, commit)
    if any((repo.info.root / path).exists() for path in candidates):
        hint = (
            f"{LOOP_DIR}/{name}.yml exists but is not committed; outloop reads loops from the "
            "starting commit so an agent cannot change its own config. Commit it first."
        )
    elif known:
        hint = "loops at this commit: " + ", ".join(known)
    else:
        hint = "create one with `outloop init` and commit it"
    raise UsageError(f"no loop `{name}` at commit {commit[:10]}", hint=hint)
