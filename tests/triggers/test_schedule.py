"""`outloop schedule`: systemd user units verified by systemd itself, crontab blocks owned by outloop.

This machine's container has no systemd as PID 1 and no user manager
(`systemd --user` exits at once without a delegated cgroup), so timers cannot
run for real here: the units are checked with `systemd-analyze verify`, and
their calendar with `systemd-analyze calendar` (test_cron.py). Where no
`crontab` is installed, a faithful stand-in keeps the table in a file with
crontab's own interface (`-l`, `-`, "no crontab for USER").
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli

FAKE_CRONTAB = """#!/bin/sh
table="$FAKE_CRONTAB_FILE"
case "$1" in
  -l) if [ -f "$table" ]; then cat "$table"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$table" ;;
  *) echo "usage: crontab [-l | -]" >&2; exit 1 ;;
esac
"""


def loops(make_repo: RepoFactory) -> Path:
    return make_repo(
        {
            ".outloop/nightly.yml": loop_yaml(
                ["my-agent"], "pytest -q", on={"schedule": ["0 2 * * *", "0 9 1 * MON"]}
            ),
            ".outloop/berlin.yml": loop_yaml(
                ["my-agent"],
                "pytest -q",
                on={"schedule": ["*/30 9-17 * * MON-FRI"], "timezone": "Europe/Berlin"},
            ),
            ".outloop/manual.yml": loop_yaml(["my-agent"], "pytest -q"),
        },
        name="client repo",
    )


def unit_dir(home: Path) -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user"


def test_systemd_units_are_written_and_pass_systemd_analyze_verify(
    make_repo: RepoFactory, tmp_path: Path, isolated_user_state: Path
) -> None:
    repo = loops(make_repo)
    done = run_cli(repo, "schedule", "install", "--backend", "systemd")
    assert done.returncode == 0, done.stderr
    folder = unit_dir(isolated_user_state)
    timers = sorted(folder.glob("outloop-*.timer"))
    services = sorted(folder.glob("outloop-*.service"))
    assert len(timers) == len(services) == 2
    # no user manager here: written, not started, and said so
    assert "no systemd user manager is reachable" in done.stderr
    nightly = next(t for t in timers if t.name.endswith("-nightly.timer")).read_text()
    # the either-day rule of cron (1st of the month OR Monday) is two calendar lines
    assert "OnCalendar=*-*-* 02:00:00 UTC" in nightly
    assert "OnCalendar=*-*-01 09:00:00 UTC" in nightly
    assert "OnCalendar=Mon *-*-* 09:00:00 UTC" in nightly
    assert "Persistent=true" in nightly
    berlin = next(t for t in timers if t.name.endswith("-berlin.timer")).read_text()
    assert berlin.count("Europe/Berlin") >= 2
    service = next(s for s in services if s.name.endswith("-nightly.service")).read_text()
    assert f"WorkingDirectory={repo}" in service
    assert '"run" "nightly" "--trigger" "schedule"' in service
    assert "SuccessExitStatus=75" in service
    assert "OUTLOOP_SECRET" not in service
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    analyze = shutil.which("systemd-analyze")
    assert analyze, "Debian's systemd package provides systemd-analyze"
    verified = subprocess.run(
        [analyze, "verify", "--user", *map(str, timers + services)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert verified.returncode == 0, verified.stderr
    # the control: systemd-analyze does reject a broken unit
    broken = tmp_path / "outloop-broken.service"
    broken.write_text(service.replace('ExecStart="', 'ExecStart=" '))
    rejected = subprocess.run(
        [analyze, "verify", "--user", str(broken)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert rejected.returncode != 0


def test_list_shows_next_fire_times_and_remove_takes_them_away(
    make_repo: RepoFactory, isolated_user_state: Path
) -> None:
    repo = loops(make_repo)
    run_cli(repo, "schedule", "install", "nightly", "--backend", "systemd", check=True)
    listed = run_cli(repo, "schedule", "list", "--backend", "systemd", "--json", check=True)
    (entry,) = json.loads(listed.stdout)
    assert entry["loop"] == "nightly" and entry["repo"] == str(repo)
    assert len(entry["next"]) == 3
    assert all(t.endswith("Z") for t in entry["next"])
    removed = run_cli(repo, "schedule", "remove", "--backend", "systemd", check=True)
    assert "removed nightly" in removed.stdout
    assert list(unit_dir(isolated_user_state).glob("outloop-*")) == []


def test_a_loop_without_a_schedule_is_a_config_error(make_repo: RepoFactory) -> None:
    repo = loops(make_repo)
    done = run_cli(repo, "schedule", "install", "manual", "--backend", "systemd")
    assert done.returncode == 2
    assert "no `on.schedule` to install" in done.stderr


@pytest.fixture
def fake_crontab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "crontab"
    script.write_text(FAKE_CRONTAB)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    table = tmp_path / "crontab.txt"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CRONTAB_FILE", str(table))
    return table


def test_cron_edits_only_its_own_block(make_repo: RepoFactory, fake_crontab: Path) -> None:
    fake_crontab.write_text("MAILTO=me@example.com\n15 * * * * /usr/bin/backup --all\n")
    repo = loops(make_repo)
    run_cli(repo, "schedule", "install", "--backend", "cron", check=True)
    table = fake_crontab.read_text()
    assert table.startswith("MAILTO=me@example.com\n15 * * * * /usr/bin/backup --all\n")
    assert table.count("# >>> outloop schedules") == 1
    assert "CRON_TZ=Europe/Berlin" in table
    assert "0 2 * * * cd '" in table and "--trigger schedule" in table
    # installing again replaces its entries, it does not add more
    run_cli(repo, "schedule", "install", "--backend", "cron", check=True)
    assert fake_crontab.read_text() == table
    listed = json.loads(run_cli(repo, "schedule", "list", "--backend", "cron", "--json").stdout)
    assert sorted(e["loop"] for e in listed) == ["berlin", "nightly"]
    run_cli(repo, "schedule", "remove", "--backend", "cron", check=True)
    assert fake_crontab.read_text() == "MAILTO=me@example.com\n15 * * * * /usr/bin/backup --all\n"


def test_a_cron_line_runs_the_loop_as_cron_would(
    make_repo: RepoFactory, fake_crontab: Path, tmp_path: Path
) -> None:
    """The command of an installed line, run by /bin/sh as cron runs it, starts a scheduled run."""
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"), counter_goal(1), on={"schedule": ["* * * * *"]}
            )
        }
    )
    run_cli(repo, "schedule", "install", "--backend", "cron", check=True)
    line = next(x for x in fake_crontab.read_text().splitlines() if x.startswith("* * * * * "))
    command = line.removeprefix("* * * * * ").replace("\\%", "%")
    done = subprocess.run(["/bin/sh", "-c", command], timeout=120, env=dict(os.environ))
    assert done.returncode == 0
    ledger = (repo / ".git/outloop/triggers.jsonl").read_text().splitlines()
    assert json.loads(ledger[-1])["kind"] == "schedule"


def test_a_line_break_in_a_path_or_variable_never_writes_a_line_of_its_own() -> None:
    import shlex

    from outloop_cli.errors import UsageError
    from outloop_cli.triggers.machine import Entry, cron_lines, service_unit

    injected = "/tmp/x\n* * * * * touch /tmp/pwned #"
    entry = Entry(injected, "fix", "outloop-0-fix", ("0 2 * * *",), None)
    # control: quoted as a shell word only, the break survives and cron reads a second line
    second = f"cd {shlex.quote(injected)}".splitlines()[1]
    assert second.startswith("* * * * * touch /tmp/pwned #")
    with pytest.raises(UsageError, match="line break"):
        cron_lines(entry, ["outloop"], Path("/tmp/log"))
    with pytest.raises(UsageError, match="line break"):
        service_unit(entry, ["outloop"], [])
    plain = Entry("/srv/repo", "fix", "outloop-0-fix", ("0 2 * * *",), None)
    with pytest.raises(UsageError, match="line break"):
        service_unit(plain, ["outloop"], [("HOME", "/root\nExecStartPre=/bin/touch /tmp/pwned")])
    # control: the same entry without a break is one line per schedule
    assert len(cron_lines(plain, ["outloop"], Path("/tmp/log"))) == 3
