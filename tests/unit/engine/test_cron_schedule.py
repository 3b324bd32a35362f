"""Cron expressions as the real engine reads them (protocol.md §6.5; decisions "Policies", cron).

Day-of-week follows the Rust ``cron`` crate (1-7 = Sunday-Saturday, names accepted); croniter is
driven with ``second_at_beginning=True`` after the field is translated. Both are checked here
against a calendar: 2026-08-22 is a Saturday.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from iii_typed.engine.builtins.cron import CronExpressionError, parse_cron, translate_day_of_week

SATURDAY = datetime(2026, 8, 22, 12, 0, 0, tzinfo=UTC)


def upcoming(expression: str, count: int = 7, start: datetime = SATURDAY) -> list[datetime]:
    it = parse_cron(expression).iterator(start)
    return [it.get_next(datetime) for _ in range(count)]


def weekdays(expression: str, count: int = 7) -> list[str]:
    return [moment.strftime("%a") for moment in upcoming(expression, count)]


def test_seconds_come_first() -> None:
    assert upcoming("*/15 * * * * *", 4) == [
        datetime(2026, 8, 22, 12, 0, s, tzinfo=UTC) for s in (15, 30, 45)
    ] + [datetime(2026, 8, 22, 12, 1, 0, tzinfo=UTC)]
    assert upcoming("30 5 * * * *", 2) == [
        datetime(2026, 8, 22, 12, 5, 30, tzinfo=UTC),
        datetime(2026, 8, 22, 13, 5, 30, tzinfo=UTC),
    ]


def test_day_of_week_one_is_sunday_and_seven_is_saturday() -> None:
    assert set(weekdays("0 0 0 * * 1")) == {"Sun"}
    assert set(weekdays("0 0 0 * * 7")) == {"Sat"}
    assert weekdays("0 0 0 * * 2-6", 5) == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert weekdays("0 0 0 * * MON-FRI", 5) == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert set(weekdays("0 0 0 * * sun,Saturday")) == {"Sun", "Sat"}
    assert weekdays("0 0 0 * * */2", 4) == ["Sun", "Tue", "Thu", "Sat"]
    assert weekdays("0 0 0 * * 2/2", 3) == ["Mon", "Wed", "Fri"]
    assert set(weekdays("0 0 0 ? * 4")) == {"Wed"}


@pytest.mark.parametrize(
    ("field", "translated"),
    [
        ("*", "*"),
        ("?", "*"),
        ("1", "0"),
        ("7", "6"),
        ("1-7", "*"),
        ("2-6", "1,2,3,4,5"),
        ("MON-FRI", "1,2,3,4,5"),
        ("1/3", "0,3,6"),
        ("*/2", "0,2,4,6"),
        ("sun,SAT", "0,6"),
        ("tuesday", "2"),
    ],
)
def test_translation(field: str, translated: str) -> None:
    assert translate_day_of_week(field) == translated


@pytest.mark.parametrize("field", ["0", "8", "5-2", "L", "1#2", "", "1,", "*/0", "x"])
def test_bad_day_of_week(field: str) -> None:
    with pytest.raises(CronExpressionError):
        translate_day_of_week(field)


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # the 13th that is a Friday (dow 6), not "every 13th or every Friday"
    fridays = upcoming("0 0 0 13 * 6", 2)
    assert [m.strftime("%Y-%m-%d %a") for m in fridays] == ["2026-11-13 Fri", "2027-08-13 Fri"]


def test_seven_fields_take_a_year() -> None:
    assert upcoming("0 0 0 1 1 * 2030", 1) == [datetime(2030, 1, 1, tzinfo=UTC)]
    assert parse_cron("0 0 0 1 1 * 2020").next_after(SATURDAY) is None


@pytest.mark.parametrize(
    "expression", ["* * * * *", "nope", "* * * * * * * *", "61 * * * * *", "0 0 0 32 * *"]
)
def test_bad_expressions(expression: str) -> None:
    with pytest.raises(CronExpressionError):
        parse_cron(expression)
