"""The cron parser: what it accepts, what it refuses and why, and when it fires.

Fire times are checked against systemd's own calendar arithmetic
(``systemd-analyze calendar``) for the ``OnCalendar=`` lines they translate to,
so the two computations cannot drift apart.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from outloop_cli.triggers.cron import CronError, parse_cron

T0 = datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc)  # a Friday, before a DST change


def fires(expr: str, n: int, tz: str | None = None, after: datetime = T0) -> list[str]:
    return [
        f.isoformat(timespec="minutes")
        for f in itertools.islice(parse_cron(expr).fire_times(after, tz), n)
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 2 * * *", ["2026-03-28T02:00+00:00", "2026-03-29T02:00+00:00"]),
        ("@daily", ["2026-03-28T00:00+00:00", "2026-03-29T00:00+00:00"]),
        ("@hourly", ["2026-03-27T13:00+00:00", "2026-03-27T14:00+00:00"]),
        ("*/20 12 * * *", ["2026-03-27T12:20+00:00", "2026-03-27T12:40+00:00"]),
        ("5/30 * * * *", ["2026-03-27T12:05+00:00", "2026-03-27T12:35+00:00"]),
        ("0 9 * * MON-FRI", ["2026-03-30T09:00+00:00", "2026-03-31T09:00+00:00"]),
        ("0 9 * * 7", ["2026-03-29T09:00+00:00", "2026-04-05T09:00+00:00"]),
        ("0 0 1 jan,JUL *", ["2026-07-01T00:00+00:00", "2027-01-01T00:00+00:00"]),
        # the either-day rule: the 1st of the month OR any Monday
        ("0 9 1 * MON", ["2026-03-30T09:00+00:00", "2026-04-01T09:00+00:00"]),
        # leap day: found years ahead
        ("0 0 29 2 *", ["2028-02-29T00:00+00:00", "2032-02-29T00:00+00:00"]),
    ],
)
def test_fire_times(expr: str, expected: list[str]) -> None:
    assert fires(expr, 2) == expected


def test_a_time_zone_and_its_dst_change() -> None:
    # Europe/Berlin goes to summer time on 2026-03-29: 02:30 does not exist that day
    assert fires("30 2 * * *", 3, "Europe/Berlin") == [
        "2026-03-28T01:30+00:00",
        "2026-03-30T00:30+00:00",
        "2026-03-31T00:30+00:00",
    ]


def test_last_fire_is_the_latest_at_or_before() -> None:
    cron = parse_cron("0 2 * * *")
    assert cron.last_fire(datetime(2026, 3, 27, 2, 0, tzinfo=timezone.utc)) == datetime(
        2026, 3, 27, 2, 0, tzinfo=timezone.utc
    )
    assert cron.last_fire(datetime(2026, 3, 27, 1, 59, tzinfo=timezone.utc)) == datetime(
        2026, 3, 26, 2, 0, tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    ("expr", "message", "hint"),
    [
        ("* * * *", "has 5 fields, this has 4", "minute hour day-of-month"),
        ("0 0 * * * *", "has 5 fields, this has 6", "no seconds or years field"),
        ("60 * * * *", "minute: 60 is out of range 0-59", "0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23", "0-23"),
        ("0 0 0 * *", "day of month: 0 is out of range 1-31", "1-31"),
        ("0 0 * 13 *", "month: 13 is out of range 1-12", "JAN"),
        ("0 0 * * FUN", "day of week: 'FUN' is not a number or a name", "SUN, MON"),
        ("0 0 * * 8", "day of week: 8 is out of range 0-7", "0-7"),
        ("30-10 * * * *", "runs backwards", "30-59,0-10"),
        ("*/0 * * * *", "the step /0 is out of range", "1-60"),
        ("1,,2 * * * *", "cannot read ''", None),
        ("0 0 30 2 *", "never fires", "February"),
        ("@reboot", "@reboot", "@daily"),
        ("@fortnightly", "unknown cron macro", "@weekly"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expr: str, message: str, hint: str | None) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expr)
    assert message in caught.value.message
    if hint is not None:
        assert hint in caught.value.hint


def test_macros_are_spelled_out_for_github() -> None:
    assert parse_cron("@weekly").five_fields == "0 0 * * 0"
    assert parse_cron("@annually").five_fields == "0 0 1 1 *"
    assert parse_cron("0  2 * *   *").five_fields == "0 2 * * *"


@pytest.mark.parametrize(
    ("expr", "tz"),
    [
        ("0 2 * * *", None),
        ("*/15 9-17 * * MON-FRI", "Europe/Berlin"),
        ("0 9 1 * MON", None),
        ("30 2 * * *", "Europe/Berlin"),
        ("0 0 29 2 *", "America/New_York"),
        ("10 4 1-7 * SUN", None),
    ],
)
def test_on_calendar_fires_when_cron_does(expr: str, tz: str | None) -> None:
    """systemd's next elapse of the translated OnCalendar lines is our next fire time."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze comes with Debian's systemd package (.ci/run installs it)"
    cron = parse_cron(expr)
    base = datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc)
    base_text = base.strftime("%Y-%m-%d %H:%M:%S UTC")
    for spec in cron.on_calendar(tz):
        done = subprocess.run(
            [analyze, "calendar", "--iterations=5", f"--base-time={base_text}", spec],
            capture_output=True,
            text=True,
            env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
    # all lines together: the union of their elapses is exactly the cron's fire times
    elapses: set[str] = set()
    for spec in cron.on_calendar(tz):
        done = subprocess.run(
            [analyze, "calendar", "--iterations=5", f"--base-time={base_text}", spec],
            capture_output=True,
            text=True,
            env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        )
        for match in re.finditer(r"(?:Next elapse|Iter\. #\d+):\s+\w+ (\S+ \S+) UTC", done.stdout):
            elapses.add(match.group(1))
    ours = [f.strftime("%Y-%m-%d %H:%M:%S") for f in itertools.islice(cron.fire_times(base, tz), 5)]
    assert sorted(elapses)[:5] == ours
