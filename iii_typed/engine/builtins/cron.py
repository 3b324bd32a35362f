"""``iii-cron``: the ``cron`` trigger type (protocol.md §6.5; decisions "Policies", cron).

Config ``{expression, condition_function_id?}``. The expression has 6 fields
``second minute hour day-of-month month day-of-week`` or 7 with a trailing ``year`` — **seconds
first**, like the real engine's Rust ``cron`` crate. Day-of-week is numbered as that crate does:
``1``-``7`` = Sunday-Saturday (``0`` is refused), names (``SUN``…``SAT``, case-insensitive, also
spelled out) accepted, with lists, ranges and steps (``MON-FRI``, ``2-6/2``, ``*/2``, ``1/3``).
A time matches when *every* field matches (day-of-month **and** day-of-week). Schedules run in UTC.

Parsing uses croniter (``second_at_beginning=True``, ``day_or=False``) after this module rewrites
the day-of-week field into croniter's numbering (0-6 = Sunday-Saturday).

Registration errors, reported to the registering worker as ``trigger_registration_failed``:
``Cron expression is required`` (missing or empty), ``Invalid cron expression '<expr>': <reason>``
and ``Cron job '<id>' is already registered``; unknown config fields or wrong types are refused too.

Each binding runs a timer task. At each scheduled second the binding fires (condition first, §6
"Trigger firing") with the payload ``{"actual_time", "job_id", "scheduled_time", "trigger": "cron"}``
(RFC 3339 UTC times: ``scheduled_time`` the exact second, ``actual_time`` when it fired, with
microseconds; ``job_id`` the trigger id) and the binding's metadata as sidecar (§4.4). A slow
handler does not delay the schedule (each fire runs in its own task). Missed runs are not caught
up: a timer that wakes late fires once and continues from the current time. Unregistering a
binding cancels its timer at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from croniter import CroniterBadDateError, CroniterError, croniter
from pydantic import BaseModel, Field

from ._settings import check_section, check_trigger_config
from .base import (
    BuiltinTriggerType,
    BuiltinWorker,
    EngineServices,
    TriggerBinding,
    TriggerRegistrationError,
)

__all__ = [
    "BUILTIN",
    "CronConfig",
    "CronExpressionError",
    "CronPayload",
    "CronSchedule",
    "CronWorker",
    "parse_cron",
    "translate_day_of_week",
]

log = logging.getLogger("iii_typed.engine.cron")

CRON_TRIGGER: Final = "cron"
_TRIGGER_FIELDS: Final = {"expression": str, "condition_function_id": str}
_DAY_NAMES: Final = {
    name: number
    for number, names in enumerate(
        (
            ("sun", "sunday"),
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
        ),
        start=1,
    )
    for name in names
}
#: How late (seconds) a timer may wake before the schedule is re-based on the current time.
_LATE_TOLERANCE: Final = 1.0


class CronExpressionError(ValueError):
    """The expression cannot be parsed; the message is the reason."""


class CronConfig(BaseModel):
    """Config of a ``cron`` binding."""

    expression: str = Field(description="6 or 7 fields, seconds first; day-of-week 1-7 = Sunday-Saturday.")
    condition_function_id: str | None = Field(
        default=None, description="Called first; `false` skips the fire."
    )


class CronPayload(BaseModel):
    """What a ``cron`` trigger's function receives."""

    actual_time: str = Field(description="RFC 3339 UTC time of the fire.")
    job_id: str = Field(description="The trigger id.")
    scheduled_time: str = Field(description="RFC 3339 UTC time the fire was scheduled for.")
    trigger: str = "cron"


def _day(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if not 1 <= number <= 7:
            raise CronExpressionError(
                f"day-of-week value {number} is out of range 1-7 (1 = Sunday, 7 = Saturday)"
            )
        return number
    number = _DAY_NAMES.get(token.lower(), 0)
    if number == 0:
        raise CronExpressionError(f"day-of-week {token!r} is not a day number (1-7) or name (SUN-SAT)")
    return number


def translate_day_of_week(field: str) -> str:
    """Rewrite a day-of-week field from the real engine's numbering to croniter's.

    Args:
        field: The field as the real engine reads it (1-7 = Sunday-Saturday, names, lists,
            ranges, steps, ``*``, ``?``).

    Returns:
        ``*`` or a comma-separated list of croniter day numbers (0-6 = Sunday-Saturday).

    Raises:
        CronExpressionError: a value out of range, an unknown name, a reversed range, a bad step.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        if item == "":
            raise CronExpressionError("the day-of-week field has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronExpressionError(f"day-of-week step {step_text!r} must be a positive integer")
            step = int(step_text)
        if base in ("*", "?"):
            low, high = 1, 7
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _day(first), _day(last)
            if low > high:
                raise CronExpressionError(f"day-of-week range {base!r} runs backwards")
        else:
            low = _day(base)
            high = 7 if slash else low
        days.update(range(low, high + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(str(day - 1) for day in sorted(days))


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed expression.

    Attributes:
        expression: The expression as registered.
        croniter_expression: The same schedule in croniter's syntax.
    """

    expression: str
    croniter_expression: str

    def iterator(self, start: datetime) -> croniter:
        """A croniter over the schedule, starting after ``start`` (UTC)."""
        return croniter(self.croniter_expression, start, second_at_beginning=True, day_or=False)

    def next_after(self, start: datetime) -> datetime | None:
        """The first scheduled time after ``start``, or ``None`` when there is none."""
        try:
            value: datetime = self.iterator(start).get_next(datetime)
        except CroniterBadDateError:
            return None
        return value


_SPACES = re.compile(r"\s+")


def parse_cron(expression: str) -> CronSchedule:
    """Parse a 6- or 7-field expression, seconds first (see the module docstring).

    Raises:
        CronExpressionError: the reason it cannot be parsed.
    """
    fields = _SPACES.split(expression.strip())
    if len(fields) not in (6, 7):
        raise CronExpressionError(
            f"expected 6 or 7 fields (second minute hour day-of-month month day-of-week [year]), "
            f"got {len(fields)}"
        )
    fields[5] = translate_day_of_week(fields[5])
    translated = " ".join(fields)
    try:
        croniter(translated, datetime.now(UTC), second_at_beginning=True, day_or=False)
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise CronExpressionError(str(exc) or type(exc).__name__) from None
    return CronSchedule(expression, translated)


async def _sleep_until(target: float) -> None:
    """Sleep until the wall-clock time ``target`` (asyncio may wake a little early: sleep again)."""
    delay = target - time.time()
    while delay > 0:
        await asyncio.sleep(delay)
        delay = target - time.time()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class CronWorker(BuiltinWorker):
    """The ``iii-cron`` built-in (see the module docstring)."""

    name: ClassVar[str] = "iii-cron"
    section: ClassVar[str] = "cron"
    description: ClassVar[str] = "Runs functions on 6/7-field cron schedules (seconds first)"
    order: ClassVar[int] = 50

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        check_section(self.section, services.section(self.section), {})
        self._jobs: dict[str, asyncio.Task[None]] = {}

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """``cron``."""
        return (
            BuiltinTriggerType(
                CRON_TRIGGER,
                "Fires on a cron schedule (6 or 7 fields, seconds first)",
                register=self.register_job,
                unregister=self.unregister_job,
                trigger_request_format=CronConfig.model_json_schema(),
                call_request_format=CronPayload.model_json_schema(),
            ),
        )

    async def register_job(self, binding: TriggerBinding) -> None:
        """Start the timer of a binding.

        Raises:
            TriggerRegistrationError: a bad config or expression, or the id already has a timer.
        """
        config = check_trigger_config(CRON_TRIGGER, binding.config, _TRIGGER_FIELDS)
        expression = config.get("expression")
        if not expression or not expression.strip():
            raise TriggerRegistrationError("Cron expression is required")
        try:
            schedule = parse_cron(expression)
        except CronExpressionError as exc:
            raise TriggerRegistrationError(f"Invalid cron expression '{expression}': {exc}") from None
        if binding.id in self._jobs:
            raise TriggerRegistrationError(f"Cron job '{binding.id}' is already registered")
        self._jobs[binding.id] = self.services.spawn(self._run(binding, schedule), name=f"cron:{binding.id}")

    async def unregister_job(self, binding: TriggerBinding) -> None:
        """Stop the timer of a binding (no fire happens after this returns)."""
        task = self._jobs.pop(binding.id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        """Cancel every timer."""
        tasks = list(self._jobs.values())
        self._jobs.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, binding: TriggerBinding, schedule: CronSchedule) -> None:
        scheduled = schedule.next_after(datetime.now(UTC))
        while scheduled is not None:
            target = scheduled.timestamp()
            await _sleep_until(target)
            payload: dict[str, Any] = {
                "actual_time": _rfc3339(datetime.now(UTC)),
                "job_id": binding.id,
                "scheduled_time": _rfc3339(scheduled),
                "trigger": "cron",
            }
            self.services.spawn(self.services.fire(binding, payload), name=f"cron-fire:{binding.id}")
            following = schedule.next_after(scheduled)
            if following is not None and following.timestamp() < time.time() - _LATE_TOLERANCE:
                # Woke up too late (the process was stalled): skip the missed runs (§6.5).
                log.warning(
                    "cron job %s missed runs while the engine was stalled; they are skipped", binding.id
                )
                following = schedule.next_after(datetime.now(UTC))
            scheduled = following
        log.warning("cron job %s (%s) has no more scheduled times", binding.id, schedule.expression)


BUILTIN = CronWorker
