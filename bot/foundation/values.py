"""Value types of the config file: durations (`72h`, `1h30m`), percentages (`40%`) and URLs, with their
pydantic annotations. Pure; bot/foundation/config.py re-exports them."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION_PART = re.compile(r"(\d+)(w|d|h|m|s)")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> timedelta:
    """`72h`, `7d`, `10m`, `1h30m`, `45s`, `2w` -> timedelta. Bare numbers are seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("not a duration (use e.g. 10m, 72h, 7d)")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("not a duration (use e.g. 10m, 72h, 7d)")
    text = value.strip().lower()
    if not text or _DURATION_PART.sub("", text) != "":
        raise ValueError(f"{value!r} is not a duration (use e.g. 10m, 72h, 7d)")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Inverse of parse_duration for messages: 259200s -> '3d', 5400s -> '1h30m'."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _percent(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("not a percentage (use e.g. 40%)")
    if isinstance(value, (int, float)):
        number = float(value) * (100 if 0 < value < 1 else 1)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*%?\s*", value):
        number = float(value.strip().rstrip("%"))
    else:
        raise ValueError(f"{value!r} is not a percentage (use e.g. 40%)")
    if not 0 < number <= 100:
        raise ValueError("must be between 0% and 100%")
    return number / 100


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Fraction = Annotated[float, BeforeValidator(_percent)]



def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("not a URL")
    return value.rstrip("/")


Url = Annotated[str, BeforeValidator(_url)]
