"""A worker with telemetry ON, run in a process of its own by the dashboard tests.

OpenTelemetry is process-global, so the test process (telemetry off) starts this script with
``OTEL_ENABLED=true`` and short flush intervals. The payload's ``tag`` (not ``token``: the SDK
redacts such keys in captured payloads) marks the records of one call. It serves, under
``<prefix>``:

* ``<prefix>::checkout`` — logs ``checkout <tag>`` (INFO) and calls ``<prefix>::charge``: a real
  A → B trace;
* ``<prefix>::charge`` — logs ``charge <tag>`` (WARN);
* ``<prefix>::refund`` — logs ``refund <tag>`` (ERROR) and raises ``RuntimeError("card declined")``;
* ``<prefix>::log`` — writes each ``{"level", "message"}`` of ``lines`` with ``Logger``.

Resource metrics are reported every 200 ms. It prints ``ready`` once connected and runs until
its stdin closes.

    python tests/tui/telemetry_worker.py <engine url> <prefix> <worker name>
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from iii_typed import InitOptions, Logger, register_worker


def main() -> None:
    """Serve the functions until stdin closes."""
    url, prefix, name = sys.argv[1:4]
    log = Logger(f"{prefix}-svc")
    registered = threading.Event()
    iii = register_worker(
        url,
        InitOptions(
            worker_name=name,
            otel={"metrics_export_interval_ms": 200},
            reconnection_config={"initial_delay_ms": 100, "max_delay_ms": 500},
        ),
    )

    def checkout(data: dict[str, Any]) -> int:
        log.info(f"checkout {data['tag']}", {"tag": data["tag"]})
        result = iii.trigger({"function_id": f"{prefix}::charge", "payload": data})
        return int(result) + 1

    def charge(data: dict[str, Any]) -> int:
        log.warn(f"charge {data['tag']}", {"tag": data["tag"]})
        return 2 * len(data["tag"])

    def refund(data: dict[str, Any]) -> None:
        log.error(f"refund {data['tag']}")
        raise RuntimeError("card declined")

    def write_lines(data: dict[str, Any]) -> int:
        for line in data["lines"]:
            getattr(log, line["level"])(line["message"])
        return len(data["lines"])

    iii.register_function(f"{prefix}::checkout", checkout, description="charges (calls ::charge)")
    iii.register_function(f"{prefix}::charge", charge, description="called by ::checkout")
    iii.register_function(f"{prefix}::refund", refund, description="always fails: card declined")
    iii.register_function(f"{prefix}::log", write_lines, description="writes log lines")
    iii.add_connection_state_listener(lambda state: state == "connected" and registered.set())
    if not registered.wait(30):
        raise SystemExit("the worker did not connect within 30 s")
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    iii.shutdown()


if __name__ == "__main__":
    main()
