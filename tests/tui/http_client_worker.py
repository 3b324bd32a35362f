"""A worker with telemetry ON whose application code calls the engine's REST port with ``urllib``
(run in a process of its own by ``test_live_http_client.py``).

It serves ``<prefix>::hello`` behind an ``http`` trigger (``GET /<prefix>/hello``) and, for every
line read from stdin, requests ``<http url>/<prefix>/hello?name=zed`` with ``urlopen`` outside
any function: the SDK's fetch instrumentation makes a root client span (``GET``, whose
attributes hold the URL with its query string next to ``200``) and the worker's
``execute <prefix>::hello`` span becomes its child. It prints ``ready`` once its trigger is
sent and ``done <status>`` after each request.

    python tests/tui/http_client_worker.py <engine url> <http url> <prefix> <worker name>
"""

from __future__ import annotations

import sys
import urllib.request
from typing import Any

from iii_typed import InitOptions, register_worker


def main() -> None:
    """Serve and request until stdin closes."""
    url, http_url, prefix, name = sys.argv[1:5]
    iii = register_worker(url, InitOptions(worker_name=name))

    def hello(request: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": 200, "body": {"hello": "zed"}}

    iii.register_function(f"{prefix}::hello", hello, description="behind GET /<prefix>/hello")
    iii.register_trigger(
        {
            "type": "http",
            "function_id": f"{prefix}::hello",
            "config": {"api_path": f"/{prefix}/hello", "http_method": "GET"},
        }
    )
    print("ready", flush=True)  # the test waits until the engine lists the trigger
    for _line in sys.stdin:
        with urllib.request.urlopen(f"{http_url}/{prefix}/hello?name=zed", timeout=30) as resp:
            print(f"done {resp.status}", flush=True)
    iii.shutdown()


if __name__ == "__main__":
    main()
