"""``iii-cron`` against real engine processes (protocol.md §6.5, §13 E04/E20)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from iii_typed.engine import Engine, EngineConfig
from iii_typed.engine.builtins.base import TriggerBinding, TriggerRegistrationError
from iii_typed.engine.builtins.cron import CronWorker
from iii_typed.engine.process import EngineProcess
from tests.integration.builtins.builtin_support import Recorder, client, official_worker, unique
from tests.integration.sdk.sdk_support import load_golden
from tests.support.waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")


def active_ids(iii: Any) -> set[str]:
    listed = iii.trigger(
        {
            "function_id": "engine::registered-triggers::list",
            "payload": {"trigger_type": "cron"},
            "timeout_ms": 5000,
        }
    )
    return {row["id"] for row in listed["registered_triggers"]}


def test_fires_every_second_with_the_payload_and_sidecar_then_stops(engine: EngineProcess) -> None:
    golden = load_golden()["E04"]
    ticks = Recorder()
    with client(engine.url) as iii:
        fid = f"{unique('cron')}::tick"
        iii.register_function(fid, ticks)
        handle = iii.register_trigger(
            {
                "type": "cron",
                "function_id": fid,
                "config": {"expression": "* * * * * *"},
                "metadata": {"m": 1},
            }
        )
        calls = ticks.wait(3, timeout=6)
        assert handle.error is None
        for recorded in calls:
            data = recorded.data
            assert set(data) == set(golden["data"])
            assert data["trigger"] == "cron" and data["job_id"] == handle.id
            assert recorded.metadata == golden["metadata"] == {"m": 1}
            scheduled = datetime.fromisoformat(data["scheduled_time"])
            actual = datetime.fromisoformat(data["actual_time"])
            assert data["scheduled_time"].endswith("+00:00") and scheduled.microsecond == 0
            assert data["actual_time"].endswith("+00:00")
            assert timedelta(0) <= actual - scheduled < timedelta(seconds=1)
        seconds = sorted(datetime.fromisoformat(c.data["scheduled_time"]) for c in calls)
        gaps = [b - a for a, b in itertools.pairwise(seconds)]
        # one fire per second; a stalled machine may skip a second (no catch-up) but never doubles one
        assert gaps and all(g >= timedelta(seconds=1) and g.microseconds == 0 for g in gaps), gaps
        assert gaps.count(timedelta(seconds=1)) >= len(gaps) - 1, gaps
        handle.unregister()
        wait_for(lambda: handle.id not in active_ids(iii), what="the cron binding is gone")
        settled = len(ticks.calls)
        assert ticks.stays(settled, 1.5), "a cron job fired after it was unregistered"


def test_seconds_field_steps_and_condition(engine: EngineProcess) -> None:
    even = Recorder()
    skipped = Recorder()
    with client(engine.url) as iii:
        prefix = unique("cron")
        iii.register_function(f"{prefix}::even", even)
        iii.register_function(f"{prefix}::skipped", skipped)
        iii.register_function(f"{prefix}::never", lambda data: False)
        iii.register_trigger(
            {"type": "cron", "function_id": f"{prefix}::even", "config": {"expression": "*/2 * * * * *"}}
        )
        iii.register_trigger(
            {
                "type": "cron",
                "function_id": f"{prefix}::skipped",
                "config": {"expression": "* * * * * *", "condition_function_id": f"{prefix}::never"},
            }
        )
        calls = even.wait(2, timeout=6)
        assert all(datetime.fromisoformat(c.data["scheduled_time"]).second % 2 == 0 for c in calls)
        assert skipped.calls == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"expression": ""}, "Cron expression is required"),
        ({}, "Cron expression is required"),
        ({"expression": "nope"}, "Invalid cron expression 'nope': "),
        ({"expression": "* * * * *"}, "Invalid cron expression '* * * * *': expected 6 or 7 fields"),
        ({"expression": "0 0 0 * * 0"}, "Invalid cron expression '0 0 0 * * 0': day-of-week value 0"),
        ({"expression": "0 0 0 * * MON-XYZ"}, "Invalid cron expression '0 0 0 * * MON-XYZ': "),
        ({"expression": 5}, "'expression' must be a string"),
        ({"expression": "* * * * * *", "every": 1}, "unknown field 'every'"),
    ],
)
def test_bad_expression_is_an_error_on_the_handle(engine: EngineProcess, config: Any, message: str) -> None:
    never = Recorder()
    with client(engine.url) as iii:
        fid = f"{unique('bad')}::h"
        iii.register_function(fid, never)
        handle = iii.register_trigger({"type": "cron", "function_id": fid, "config": config})
        error = handle.wait_for_error(5)
        assert error is not None and error.code == "trigger_registration_failed"
        if message.startswith(("Cron", "Invalid")):
            assert error.message.startswith(message), error.message
        else:
            assert message in error.message
        assert handle.id not in active_ids(iii)  # refused, not kept; the engine still answers
        assert never.calls == []


def test_official_worker_cron(engine: EngineProcess) -> None:
    got = Recorder()
    fid = f"{unique('off')}::cron"
    with official_worker(engine.url) as worker:
        worker.register_function(fid, got)
        worker.register_trigger({"type": "cron", "function_id": fid, "config": {"expression": "* * * * * *"}})
        calls = got.wait(1, timeout=15)
        assert set(calls[0].data) == {"actual_time", "job_id", "scheduled_time", "trigger"}


async def test_same_job_id_twice_is_refused() -> None:
    async with Engine(EngineConfig(port=0), builtins=[CronWorker]) as engine:
        cron = CronWorker(engine.router)
        binding = TriggerBinding(
            id="job-1", trigger_type="cron", function_id="f", config={"expression": "0 0 0 1 1 *"}
        )
        await cron.register_job(binding)
        try:
            with pytest.raises(TriggerRegistrationError, match=r"^Cron job 'job-1' is already registered$"):
                await cron.register_job(binding)
        finally:
            await cron.unregister_job(binding)
            await cron.stop()
        await cron.register_job(binding)  # free again after unregistering
        await cron.stop()
