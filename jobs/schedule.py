"""Triggers from the config, and triggers in words for `/ops jobs`.

APScheduler 3 numbers weekdays from Monday = 0, while crontab numbers them from Sunday = 0, and its
`CronTrigger.from_crontab` passes the numbers through unchanged ("a historical mistake", its docstring
says; https://github.com/agronholm/apscheduler/issues/286): `0 10 * * 1-5` would run Tuesday to
Saturday. `crontab()` turns crontab's weekday numbers into names, which both read the same way.
"""
from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]  # crontab's numbering: 0 (and 7) = Sunday
DAYS = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday",
        "sat": "Saturday", "sun": "Sunday"}
APS_DAYS = list(DAYS)  # APScheduler's numbering: 0 = Monday


def crontab(expr: str) -> CronTrigger:
    """A CronTrigger that runs when crontab would (UTC unless the scheduler says otherwise)."""
    values = expr.split()
    if len(values) != 5:
        raise ValueError(f"a crontab schedule has 5 fields, got {len(values)}: {expr!r}")
    minute, hour, day, month, weekday = values
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekday_names(weekday))


def _weekday_names(field: str) -> str:
    if field == "*":
        return "*"
    days: list[int] = []
    for item in field.lower().split(","):
        base, _, step = item.partition("/")
        first, _, last = ("0-6" if base == "*" else base).partition("-")
        a, b = _cron_day(first), _cron_day(last) if last else None
        if b is None and not step:
            days.append(a)
            continue
        b = 6 if b is None else b
        if b < a:
            b += 7  # a range across the weekend, e.g. fri-mon
        days += [d % 7 for d in range(a, b + 1, int(step) if step else 1)]
    return ",".join(CRON_DAYS[d] for d in sorted(set(days)))


def _cron_day(token: str) -> int:
    token = token.strip()
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token[:3] in CRON_DAYS:
        return CRON_DAYS.index(token[:3])
    raise ValueError(f"not a day of the week: {token!r}")


def in_words(trigger) -> str:
    """A trigger as a person says it: "every 2 min", "Monday to Friday at 10:00 UTC" (not APScheduler's repr)."""
    if trigger is None:
        return "manual only"
    interval = getattr(trigger, "interval", None)
    if interval is not None:
        seconds = int(interval.total_seconds())
        for unit, size in (("day", 86400), ("hour", 3600), ("min", 60)):
            if seconds >= size and seconds % size == 0:
                n = seconds // size
                return f"every {unit}" if n == 1 else f"every {n} {unit}{'s' if unit != 'min' else ''}"
        return f"every {seconds} s"
    fields = {f.name: str(f) for f in getattr(trigger, "fields", [])}
    minute, hour = fields.get("minute", "*"), fields.get("hour", "*")
    day, month, weekday = fields.get("day", "*"), fields.get("month", "*"), fields.get("day_of_week", "*")
    expression = " ".join((minute, hour, day, month, weekday))
    days = _days_in_words(weekday)
    if not (minute.isdigit() and hour.isdigit() and day == "*" and month == "*") or days is None:
        return f"cron `{expression}` (UTC)"
    return f"{days} at {int(hour):02d}:{int(minute):02d} UTC"


def _days_in_words(field: str) -> str | None:
    """APScheduler's day_of_week (names, or numbers from Monday = 0) in words; runs of 3+ days as ranges."""
    if field == "*":
        return "every day"
    try:
        days = sorted({APS_DAYS.index(t) if not t.isdigit() else int(t)
                       for item in field.split(",") for t in _expand(item.strip().lower())})
    except (ValueError, IndexError):
        return None
    if days == list(range(5)):
        return "Monday to Friday"
    runs, start = [], None
    for i, d in enumerate(days):
        start = d if start is None else start
        if i + 1 == len(days) or days[i + 1] != d + 1:
            names = [DAYS[APS_DAYS[x]] for x in range(start, d + 1)]
            runs.append(f"{names[0]} to {names[-1]}" if len(names) >= 3 else ", ".join(names))
            start = None
    return ", ".join(runs)


def _expand(item: str) -> list[str]:
    first, _, last = item.partition("-")
    if not last:
        return [first]
    a = APS_DAYS.index(first) if not first.isdigit() else int(first)
    b = APS_DAYS.index(last) if not last.isdigit() else int(last)
    return [str(d) for d in range(a, b + 1)]
