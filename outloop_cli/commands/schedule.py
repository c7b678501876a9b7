"""``outloop schedule install|list|remove``: a loop's ``on.schedule`` on this machine.

systemd user timers where systemd runs (units under
``$XDG_CONFIG_HOME/systemd/user/``), else a block of crontab lines that outloop
owns between two markers; ``--backend`` overrides the choice. The unit text and
the crontab lines are :mod:`outloop_cli.triggers.machine`'s; this module finds
the loops, writes, and asks systemctl and crontab.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from outloop_cli import paths
from outloop_cli.config.loader import load_loop_file
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.source import find_loop_files
from outloop_cli.errors import ConfigError, CouldNotRun, Problem, UsageError
from outloop_cli.git.repo import discover
from outloop_cli.process.spawn import run_captured
from outloop_cli.store.atomic import atomic_write_text
from outloop_cli.triggers.cron import parse_cron
from outloop_cli.triggers.machine import (
    UNIT_PREFIX,
    Entry,
    block_entries,
    cron_lines,
    entry_for,
    join_crontab,
    repo_hash,
    service_unit,
    split_crontab,
    timer_unit,
)

BACKENDS = ("systemd", "cron")
# what a timer's run needs from the environment it was installed from; never a secret
_KEPT_ENV = (
    "PATH",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "OUTLOOP_POLICY",
    "OUTLOOP_AGENTS_BIN",
)


@dataclass(frozen=True)
class Installed:
    """One loop's schedule on this machine: what was written for it and when it fires next."""

    entry: Entry
    backend: str
    # what was written: unit files, or "crontab"
    files: tuple[str, ...] = ()
    next_fires: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What ``outloop schedule install|list|remove`` did, with which backend, and notes to show."""

    backend: str
    entries: list[Installed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def unit_dir() -> Path:
    return paths.config_home().parent / "systemd" / "user"


def _env() -> dict[str, str]:
    return dict(os.environ)


def _outloop_command() -> list[str]:
    # the interpreter this outloop runs under: a venv's outloop keeps working from a timer
    return [sys.executable, "-m", "outloop_cli"]


def detect_backend() -> str:
    """systemd when it runs this machine (PID 1), else cron when crontab is installed."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        return "systemd"
    if shutil.which("crontab"):
        return "cron"
    raise CouldNotRun(
        "neither systemd (not running as PID 1 here) nor crontab is available",
        hint="install cron (Debian: apt-get install cron), or pass --backend systemd to "
        "write units for a systemd user manager you start yourself",
    )


def user_manager_reachable() -> bool:
    if not shutil.which("systemctl"):
        return False
    try:
        done = run_captured(
            ["systemctl", "--user", "show-environment"], cwd=Path("/"), env=_env(), timeout=10
        )
    except CouldNotRun:
        return False
    return done.returncode == 0


def _systemctl(*args: str) -> None:
    done = run_captured(["systemctl", "--user", *args], cwd=Path("/"), env=_env(), timeout=60)
    if done.returncode != 0:
        raise CouldNotRun(
            f"systemctl --user {' '.join(args)} failed: "
            + done.stderr.decode("utf-8", "replace").strip(),
        )


def next_fires(entry: Entry, count: int = 3, now: datetime | None = None) -> list[str]:
    """The next ``count`` fire times of all the entry's expressions together, in UTC."""
    import itertools

    moment = now or datetime.now(timezone.utc)
    upcoming: set[datetime] = set()
    for text in entry.schedule:
        upcoming.update(
            itertools.islice(parse_cron(text).fire_times(moment, entry.timezone), count)
        )
    return [
        f.isoformat(timespec="minutes").replace("+00:00", "Z") for f in sorted(upcoming)[:count]
    ]


def _scheduled_loops(cwd: Path, loops: Sequence[str]) -> tuple[Path, Path, list[LoopConfig]]:
    info = discover(cwd)
    files = {p.stem: p for p in find_loop_files(info.root)}
    for wanted in loops:
        if wanted not in files:
            raise UsageError(
                f"no loop `{wanted}` in .outloop/",
                hint="loops here: " + (", ".join(files) or "none"),
            )
    problems: list[Problem] = []
    configs: list[LoopConfig] = []
    for name in loops or sorted(files):
        try:
            config = load_loop_file(files[name], repo_root=info.root)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if config.triggers.schedule:
            configs.append(config)
        elif loops:
            problems.append(
                Problem(
                    config.path,
                    "the loop has no `on.schedule` to install",
                    hint='add e.g. `on: {schedule: ["0 2 * * *"]}`',
                )
            )
    if problems:
        raise ConfigError(problems)
    if not configs:
        raise UsageError(
            "no loop here has an `on.schedule`",
            hint='add e.g. `on: {schedule: ["0 2 * * *"]}` to a loop file',
        )
    return info.root, info.common_dir, configs


def _kept_env() -> list[tuple[str, str]]:
    return [(k, os.environ[k]) for k in _KEPT_ENV if os.environ.get(k)]


def install(cwd: Path, loops: Sequence[str], backend: str | None = None) -> Outcome:
    root, common, configs = _scheduled_loops(cwd, loops)
    chosen = backend or detect_backend()
    outcome = Outcome(chosen)
    entries = [entry_for(c, root, common) for c in configs]
    if chosen == "systemd":
        folder = unit_dir()
        folder.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            service = folder / f"{entry.unit}.service"
            timer = folder / f"{entry.unit}.timer"
            atomic_write_text(service, service_unit(entry, _outloop_command(), _kept_env()))
            atomic_write_text(timer, timer_unit(entry))
            outcome.entries.append(
                Installed(entry, chosen, (str(service), str(timer)), tuple(next_fires(entry)))
            )
        if user_manager_reachable():
            _systemctl("daemon-reload")
            _systemctl("enable", "--now", *(f"{e.unit}.timer" for e in entries))
        else:
            timers = " ".join(f"{e.unit}.timer" for e in entries)
            outcome.notes.append(
                "no systemd user manager is reachable from here: the units are written but "
                f"not started; in a session run `systemctl --user daemon-reload && systemctl "
                f"--user enable --now {timers}` (and `loginctl enable-linger` to run them "
                "while logged out)"
            )
        return outcome
    _cron_install(entries, outcome)
    return outcome


def _read_crontab() -> str:
    done = run_captured(["crontab", "-l"], cwd=Path("/"), env=_env(), timeout=30)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace")
        if "no crontab" in message.lower():
            return ""
        raise CouldNotRun(f"crontab -l failed: {message.strip()}")
    return done.stdout.decode("utf-8", "replace")


def _write_crontab(text: str) -> None:
    done = run_captured(
        ["crontab", "-"], cwd=Path("/"), env=_env(), timeout=30, stdin_data=text.encode()
    )
    if done.returncode != 0:
        raise CouldNotRun("crontab - failed: " + done.stderr.decode("utf-8", "replace").strip())


def _log_path(entry: Entry) -> Path:
    return paths.state_home() / "schedule" / f"{entry.unit}.log"


def _cron_install(entries: Sequence[Entry], outcome: Outcome) -> None:
    before, block, after = split_crontab(_read_crontab())
    kept = [lines for e, lines in block_entries(block) if e.unit not in {n.unit for n in entries}]
    new = []
    for entry in entries:
        _log_path(entry).parent.mkdir(parents=True, exist_ok=True)
        new.append(cron_lines(entry, _outloop_command(), _log_path(entry)))
        outcome.entries.append(Installed(entry, "cron", ("crontab",), tuple(next_fires(entry))))
    _write_crontab(join_crontab(before, [*kept, *new], after))


def installed(backend: str | None = None) -> Outcome:
    """Every schedule outloop installed for this user (any repository), with next fire times."""
    chosen = backend or detect_backend()
    outcome = Outcome(chosen)
    if chosen == "systemd":
        folder = unit_dir()
        for timer in sorted(folder.glob(f"{UNIT_PREFIX}*.timer")) if folder.is_dir() else []:
            entry = Entry.from_meta(timer.read_text("utf-8", errors="replace"))
            if entry is not None:
                outcome.entries.append(
                    Installed(entry, chosen, (str(timer),), tuple(next_fires(entry)))
                )
        return outcome
    _, block, _ = split_crontab(_read_crontab())
    for entry, _lines in block_entries(block):
        outcome.entries.append(Installed(entry, chosen, ("crontab",), tuple(next_fires(entry))))
    return outcome


def remove(cwd: Path, loops: Sequence[str], backend: str | None = None) -> Outcome:
    """Remove this repository's schedules (or only those of ``loops``)."""
    info = discover(cwd)
    prefix = f"{UNIT_PREFIX}{repo_hash(info.common_dir)}-"
    chosen = backend or detect_backend()
    outcome = Outcome(chosen)

    def wanted(entry: Entry) -> bool:
        return entry.unit.startswith(prefix) and (not loops or entry.loop in loops)

    if chosen == "systemd":
        gone = [i for i in installed(chosen).entries if wanted(i.entry)]
        if gone and user_manager_reachable():
            _systemctl("disable", "--now", *(f"{i.entry.unit}.timer" for i in gone))
        for item in gone:
            for suffix in (".timer", ".service"):
                (unit_dir() / f"{item.entry.unit}{suffix}").unlink(missing_ok=True)
            outcome.entries.append(item)
        if gone and user_manager_reachable():
            _systemctl("daemon-reload")
        return outcome
    before, block, after = split_crontab(_read_crontab())
    kept = []
    for entry, lines in block_entries(block):
        if wanted(entry):
            outcome.entries.append(Installed(entry, chosen, ("crontab",)))
        else:
            kept.append(lines)
    if outcome.entries:
        _write_crontab(join_crontab(before, kept, after))
    return outcome
