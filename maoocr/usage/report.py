"""The usage report of a date range, from the per-day counters."""

from __future__ import annotations

import re
from datetime import date, timedelta

from maoocr.errors import InvalidRequest
from maoocr.protocol.usage import DayUsage, ModelUsage, OwnerUsage, UsageReport, UsageTotals
from maoocr.store.usage import MODEL_COUNTERS, UsageStore, split_field, utc_today

DEFAULT_DAYS = 30
MAX_DAYS = 366


def date_range(start: str | None, end: str | None) -> tuple[date, date]:
    """The asked range (YYYY-MM-DD, both days included): by default the last DEFAULT_DAYS days up to today (UTC)."""
    last = _day("end", end) if end else utc_today()
    first = _day("start", start) if start else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidRequest(f"start ({first}) is after end ({last})")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidRequest(f"the range spans {(last - first).days + 1} days; at most {MAX_DAYS} may be asked at once")
    return first, last


def _day(name: str, text: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{name}: {text!r} is not a date written YYYY-MM-DD") from None


def usage_report(store: UsageStore, start: date, end: date, owner: str | None) -> UsageReport:
    """Usage from `start` to `end` of `owner`, or of every key when `owner` is None."""
    owners: dict[str, OwnerUsage] = {}
    for (day, who), counters in sorted(store.days(start, end, owner).items()):
        entry = owners.setdefault(who, OwnerUsage(owner=who, totals=UsageTotals(), models={}, days=[]))
        today = DayUsage(day=day, totals=UsageTotals(), models={})
        for field, n in counters.items():
            model, counter = split_field(field)
            if model is None:
                setattr(today.totals, counter, n)
            elif counter in MODEL_COUNTERS:
                setattr(today.models.setdefault(model, ModelUsage()), counter, n)
        for model, used in today.models.items():
            today.totals.add(used)
            entry.models.setdefault(model, ModelUsage()).add(used)
        entry.totals.add(today.totals)
        entry.days.append(today)
    return UsageReport(start=start, end=end, owners=sorted(owners.values(), key=lambda o: o.owner))
