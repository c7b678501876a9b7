"""Cron expressions: parsed once, then asked for fire times and written for other schedulers.

The dialect is the one GitHub Actions and Vixie cron share: five fields (minute,
hour, day of month, month, day of week), ``*``, ``a``, ``a-b``, ``*/n``,
``a-b/n``, ``a/n``, comma lists, month and weekday names (``JAN``, ``mon``), 7
as another Sunday, and the macros ``@yearly``/``@annually``, ``@monthly``,
``@weekly``, ``@daily``/``@midnight`` and ``@hourly``. Like every cron, when both
the day of month and the day of week are restricted a day matches when *either*
does (``0 9 1 * MON`` is the 1st and every Monday).

The same parsed form gives GitHub's ``schedule: cron`` (macros spelled out) and
systemd's ``OnCalendar=`` lines (two lines for the either-day rule, since one
calendar expression can only say "and").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True)
class _FieldSpec:
    """One field of a cron expression: its range and its names."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    # the value the first name stands for (JAN is 1, SUN is 0)
    names_from: int = 0


_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day of month", 1, 31),
    _FieldSpec("month", 1, 12, _MONTHS, 1),
    # 7 is Sunday too; folded into 0 after parsing
    _FieldSpec("day of week", 0, 7, _DAYS, 0),
)
FORMAT_HINT = (
    'five fields "minute hour day-of-month month day-of-week", e.g. "0 2 * * *" '
    '(02:00 every day) or "*/15 9-17 * * MON-FRI"; or @hourly, @daily, @weekly, @monthly, @yearly'
)


def _field_pattern(number: str, names: tuple[str, ...] = ()) -> str:
    """One field for the JSON Schema: values in range, ranges, steps, lists (not step bounds)."""
    # ECMA-262 (what JSON Schema validators use) has no inline (?i): spell out both cases
    spelled = ["".join(f"[{c.upper()}{c}]" for c in name) for name in names]
    value = f"(?:{number}" + "".join(f"|{n}" for n in spelled) + ")"
    item = rf"(?:\*|{value}(?:-{value})?)(?:/[0-9]+)?"
    return rf"{item}(?:,{item})*"


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# what the JSON Schema can check: a macro, or five fields of values in range
SCHEMA_PATTERN = (
    r"[ \t]*(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + r"[ \t]+".join(
        (
            _field_pattern(r"0?[0-9]|[1-5][0-9]"),
            _field_pattern(r"0?[0-9]|1[0-9]|2[0-3]"),
            _field_pattern(r"0?[1-9]|[12][0-9]|3[01]"),
            _field_pattern(r"0?[1-9]|1[0-2]", _MONTH_NAMES),
            _field_pattern(r"0?[0-7]", _DAY_NAMES),
        )
    )
    + r")[ \t]*"
)


class CronError(ValueError):
    def __init__(self, message: str, hint: str = FORMAT_HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the set of values each field allows."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    # a field written as `*` or `*/n` does not restrict the day (the either-day rule)
    days_restricted: bool
    weekdays_restricted: bool

    @property
    def five_fields(self) -> str:
        """The expression as five fields (a macro spelled out): what GitHub Actions accepts."""
        return MACROS.get(self.text.lower(), self.text)

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def _day_times(self, day: date, zone: ZoneInfo | timezone) -> list[datetime]:
        """The fire times of one local day, in UTC, earliest first."""
        if not self.day_matches(day):
            return []
        times = []
        for hour in sorted(self.hours):
            for minute in sorted(self.minutes):
                wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                moment = wall.astimezone(timezone.utc)
                # a wall-clock time a DST change skips does not exist: it does not fire
                if moment.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
                    times.append(moment)
        return times

    def fire_times(self, after: datetime, tz: str | None = None) -> Iterator[datetime]:
        """Fire times strictly after ``after`` (aware), in UTC, earliest first.

        Wall-clock times that a DST change skips do not fire; a time that occurs
        twice fires once, at its first occurrence.
        """
        zone = _zone(tz)
        limit = after.astimezone(timezone.utc)
        day = after.astimezone(zone).date()
        # the next fire is always within eight years (29 February comes every four);
        # a search that long without one means there is none
        idle = 0
        while idle < _SEARCH_DAYS:
            idle += 1
            for moment in self._day_times(day, zone):
                if moment > limit:
                    idle = 0
                    yield moment
            day += timedelta(days=1)

    def next_fire(self, after: datetime, tz: str | None = None) -> datetime | None:
        return next(self.fire_times(after, tz), None)

    def last_fire(self, at_or_before: datetime, tz: str | None = None) -> datetime | None:
        """The latest fire time at or before ``at_or_before``, in UTC."""
        zone = _zone(tz)
        limit = at_or_before.astimezone(timezone.utc)
        day = at_or_before.astimezone(zone).date()
        for _ in range(_SEARCH_DAYS):
            earlier = [t for t in self._day_times(day, zone) if t <= limit]
            if earlier:
                return earlier[-1]
            day -= timedelta(days=1)
        return None

    def on_calendar(self, tz: str | None = None) -> list[str]:
        """systemd ``OnCalendar=`` values that fire exactly when this expression does."""
        time_part = f"{_join(self.hours)}:{_join(self.minutes)}:00"
        suffix = f" {tz}" if tz else " UTC"
        months = "*" if self.months == frozenset(range(1, 13)) else _join(self.months)
        days = "*" if self.days == frozenset(range(1, 32)) else _join(self.days)
        weekdays = ",".join(_SYSTEMD_DAYS[d] for d in sorted(self.weekdays))
        if self.days_restricted and self.weekdays_restricted:
            return [
                f"*-{months}-{days} {time_part}{suffix}",
                f"{weekdays} *-{months}-* {time_part}{suffix}",
            ]
        prefix = f"{weekdays} " if self.weekdays != frozenset(range(7)) else ""
        return [f"{prefix}*-{months}-{days} {time_part}{suffix}"]


_SEARCH_DAYS = 366 * 8 + 1


def _zone(tz: str | None) -> ZoneInfo | timezone:
    # zoneinfo is imported only when a time is computed: checking a loop file's
    # cron (`outloop validate`) needs the fields alone
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz) if tz else timezone.utc


def _join(values: frozenset[int]) -> str:
    return ",".join(f"{v:02d}" for v in sorted(values))


_TOKEN_RE = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


def _value(text: str, spec: _FieldSpec) -> int:
    names = f" or a name ({', '.join(n.upper() for n in spec.names)})" if spec.names else ""
    if text.isdigit():
        value = int(text)
    elif text.lower() in spec.names:
        return spec.names.index(text.lower()) + spec.names_from
    else:
        raise CronError(
            f"{spec.name}: {text!r} is not a number{names}",
            f"the {spec.name} field takes {spec.low}-{spec.high}{names}",
        )
    if not spec.low <= value <= spec.high:
        raise CronError(
            f"{spec.name}: {value} is out of range {spec.low}-{spec.high}",
            f"the {spec.name} field takes {spec.low}-{spec.high}{names}",
        )
    return value


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = _TOKEN_RE.match(part)
        if not match:
            raise CronError(f"{spec.name}: cannot read {part!r}")
        range_text, step_text = match.group("range"), match.group("step")
        if range_text == "*":
            low, high = spec.low, spec.high
        elif "-" in range_text:
            first, last = range_text.split("-", 1)
            low, high = _value(first, spec), _value(last, spec)
            if low > high:
                raise CronError(
                    f"{spec.name}: the range {part!r} runs backwards",
                    f"write the smaller value first; a range across the end is two ranges, "
                    f"e.g. {first}-{spec.high},{spec.low}-{last}",
                )
        else:
            low = _value(range_text, spec)
            # `5/15` is 5, 20, 35, 50: from 5 to the end in steps
            high = spec.high if step_text else low
        step = int(step_text) if step_text else 1
        if step < 1 or step > spec.high - spec.low + 1:
            raise CronError(
                f"{spec.name}: the step /{step_text} is out of range",
                f"a step is 1-{spec.high - spec.low + 1} for the {spec.name} field",
            )
        values.update(range(low, high + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> Cron:
    """Parse ``text``; raises :class:`CronError` naming the field at fault."""
    stripped = text.strip()
    expanded = MACROS.get(stripped.lower())
    if stripped.startswith("@") and expanded is None:
        if stripped.lower() == "@reboot":
            raise CronError(
                "@reboot is not a schedule outloop can compile (GitHub has no boots)",
                'use a time, e.g. @daily or "0 2 * * *"',
            )
        raise CronError(f"unknown cron macro {stripped!r}")
    fields = (expanded or stripped).split()
    if len(fields) != 5:
        hint = FORMAT_HINT
        if len(fields) == 6:
            hint = "cron here has no seconds or years field: remove one; " + FORMAT_HINT
        raise CronError(f"a cron expression has 5 fields, this has {len(fields)}", hint)
    minutes, hours, days, months, weekdays = (
        _parse_field(f, spec) for f, spec in zip(fields, _FIELDS, strict=True)
    )
    weekdays = frozenset(d % 7 for d in weekdays)
    cron = Cron(
        text=stripped if expanded else " ".join(fields),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
    )
    if not cron.weekdays_restricted or not cron.days_restricted:
        _check_possible(cron)
    return cron


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_possible(cron: Cron) -> None:
    """``0 0 30 2 *`` would never fire: say so now rather than wait forever."""
    if not cron.days_restricted:
        return
    if any(d <= _MONTH_DAYS[m - 1] for m in cron.months for d in cron.days):
        return
    raise CronError(
        "this schedule never fires: no chosen month has the chosen day",
        "pick days that exist in those months (February has at most 29)",
    )
