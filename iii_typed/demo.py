"""``iii-typed demo``: the main job, end to end, on a fresh machine.

Starts a dev engine (free ports, data under ``.demo-data/``), starts the example orders worker
(``examples/orders_worker.py``) in its own process, runs the example caller
(``examples/orders_caller.py``: generated typed stubs, the HTTP port, a live stream subscription,
a channel, a queue) in another, prints the logs and a trace the engine stored, the catalog, and
the dashboard's overview (or opens the dashboard on a terminal), then stops everything: no process
is left behind, also when a step fails or the user presses Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from .engine.process import EngineProcess

__all__ = ["main"]

WORKER_FUNCTIONS = (
    "api::get_order",
    "orders::cancel",
    "orders::create",
    "orders::export",
    "orders::get",
    "orders::list",
    "orders::on_change",
    "orders::send_receipt",
)


def _project_root() -> Path:
    """The checkout holding ``examples/`` (the current directory first, then the package's parent)."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (candidate / "examples" / "orders_worker.py").is_file():
            return candidate
    raise SystemExit("iii-typed demo: run it from the iii-typed checkout (examples/ not found)")


def _step(n: int, total: int, text: str) -> None:
    print(f"\n== [{n}/{total}] {text}", flush=True)


def _pump(stream: IO[bytes], prefix: str) -> None:
    with stream:  # closed at the child's end of output (else: ResourceWarning, unclosed file)
        for raw in stream:
            print(f"  {prefix} | {raw.decode('utf-8', 'replace').rstrip()}", flush=True)


#: The thread printing each child's output (joined when the child is stopped).
_PUMPS: dict[subprocess.Popen[bytes], threading.Thread] = {}


def _spawn(cmd: list[str], env: dict[str, str], prefix: str, cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    pump = threading.Thread(target=_pump, args=(proc.stdout, prefix), daemon=True)
    pump.start()
    _PUMPS[proc] = pump
    return proc


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    pump = _PUMPS.pop(proc, None)
    if pump is not None:
        pump.join(5)  # the rest of its output, up to the end of the pipe


def _wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _print_catalog(url: str) -> None:
    from . import InitOptions, register_worker

    with register_worker(url, InitOptions(worker_name="demo-catalog")) as iii:
        listed = iii.trigger(
            {"function_id": "engine::functions::list", "payload": {"include_internal": True}}
        )
        workers = iii.trigger({"function_id": "engine::workers::list", "payload": {}})["workers"]
        triggers = iii.trigger({"function_id": "engine::registered-triggers::list", "payload": {}})
        functions = listed["functions"]
        mine = [f for f in functions if f["function_id"].startswith(("orders::", "api::"))]
        consumers = [f for f in mine if isinstance(f.get("metadata"), dict) and f["metadata"].get("queue")]
        stats = {
            fn["function_id"]: iii.trigger(
                {"function_id": "engine::queue::topic_stats", "payload": {"topic": fn["metadata"]["queue"]}}
            )
            for fn in consumers
        }
    print(f"  {len(functions)} function(s); the example worker's {len(mine)}:")
    for fn in mine:
        print(f"    {fn['function_id']:<22} {fn.get('description', '')}")
    print("  trigger bindings:")
    for t in triggers["registered_triggers"]:
        if t["function_id"].startswith(("orders::", "api::")):
            print(f"    {t['trigger_type']:<8} -> {t['function_id']:<18} {t.get('config_summary', '')}")
    print("  queue consumers (no binding: each job names its function and queue, TriggerAction.Enqueue):")
    for fn in consumers:
        meta, queue_stats = fn["metadata"], stats[fn["function_id"]]
        by = meta.get("enqueued_by", "?")
        print(
            f"    queue    {meta['queue']:<8} -> {fn['function_id']:<22} enqueued by {by};"
            f" waiting {queue_stats.get('depth')}, dead letters {queue_stats.get('dlq_depth')}"
        )
    print(f"  {len(workers)} worker(s):")
    for w in workers:
        print(
            f"    {w.get('name')!s:<22} runtime={w.get('runtime')!s:<7} functions={w.get('function_count')}"
            f" status={w.get('status')}"
        )


def _print_telemetry(url: str) -> None:
    """The worker's log records and the trace of one ``orders::create`` call, from the engine."""
    from . import InitOptions, register_worker

    with register_worker(url, InitOptions(worker_name="demo-telemetry")) as iii:

        def call(function_id: str, payload: dict[str, Any]) -> Any:
            return iii.trigger({"function_id": function_id, "payload": payload})

        spans = _wait_until(
            lambda: call("engine::traces::list", {"name": "execute orders::create", "limit": 1})["spans"],
            15,
            "the trace of orders::create to reach the engine",
        )
        trace_id = spans[0]["trace_id"]
        logs = call("engine::logs::list", {"limit": 200})["logs"]
        tree = call("engine::traces::tree", {"trace_id": trace_id})["roots"]
    worker_logs = [entry for entry in logs if entry.get("service_name") == "orders-worker"]
    print(f"  {len(worker_logs)} log record(s) from the orders worker, e.g.:")
    for entry in worker_logs[:6]:
        level, body, trace = entry.get("severity_text", ""), entry.get("body", ""), entry.get("trace_id", "")
        print(f"    {level:<5} {body!s:<32} trace={trace}")
    print(
        f"  trace {trace_id} of one orders::create call (the state trigger's handler and the queued"
        " receipt job continue the caller's trace):"
    )

    def show(span: dict[str, Any], depth: int) -> None:
        took = (int(span["end_time_unix_nano"]) - int(span["start_time_unix_nano"])) / 1e6
        print(f"    {'  ' * depth}{span['name']:<{44 - 2 * depth}} {took:8.2f} ms  {span.get('status', '')}")
        for child in span.get("children", []):
            show(child, depth + 1)

    for root in tree:
        show(root, 0)


def _functions_registered(url: str) -> bool:
    from . import InitOptions, register_worker

    with register_worker(url, InitOptions(worker_name="demo-probe")) as iii:
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})["functions"]
    return {f["function_id"] for f in listed} >= set(WORKER_FUNCTIONS)


def _show_dashboard(url: str) -> None:
    """Open ``iii-tui`` on the demo engine when stdout is a terminal and ``DEMO_TUI`` is not ``0``;
    otherwise print the overview's text snapshot (decisions.md "Dashboard command line").

    It runs as a child process (the SDK never imports ``iii_tui``); a missing ``tui`` extra or a
    failing dashboard is reported and does not fail the demo.
    """
    cmd = [sys.executable, "-m", "iii_tui", "--url", url]
    if sys.stdout.isatty() and os.environ.get("DEMO_TUI", "1") != "0":
        subprocess.run(cmd, check=False)
        return
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run([*cmd, "--snapshot", tmp], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            print("  (the dashboard snapshot timed out)")
            return
        overview = Path(tmp) / "overview.txt"
        if overview.exists():
            print("\n".join(f"  {line}" for line in overview.read_text(encoding="utf-8").splitlines()))
        else:
            print(f"  (no dashboard snapshot: {proc.stderr.strip()[-300:]})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns 0 when every step succeeded."""
    parser = argparse.ArgumentParser(prog="iii-typed demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep-data", action="store_true", help="keep the data of a previous run")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the engine's data folder (default .demo-data/; emptied first)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)

    root = _project_root()
    data_dir = args.data_dir if args.data_dir is not None else root / ".demo-data"
    if data_dir.exists() and not args.keep_data:
        shutil.rmtree(data_dir)
    data_dir.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OTEL_ENABLED", "true")  # the worker and caller export spans and logs to the engine

    total = 6
    engine = EngineProcess(
        data_dir=data_dir, config=root / "examples/engine.toml", log_path=data_dir / "engine.log"
    )
    worker: subprocess.Popen[bytes] | None = None
    caller: subprocess.Popen[bytes] | None = None
    try:
        _step(1, total, "starting the dev engine (iii-typed engine)")
        engine.start()
        for name, address in engine.addresses.items():
            print(f"  {name:<8} {address}")
        env["III_URL"] = engine.url
        env["III_HTTP_URL"] = engine.addresses.get("http", "")
        env["III_STREAMS_URL"] = engine.addresses.get("streams", "")

        _step(2, total, "starting the example worker (examples/orders_worker.py)")
        worker = _spawn([sys.executable, str(root / "examples/orders_worker.py")], env, "worker", root)
        _wait_until(
            lambda: worker is not None and (worker.poll() is not None or _functions_registered(engine.url)),
            30,
            "the worker's functions to be registered",
        )
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}")

        _step(
            3,
            total,
            "calling it: typed client, HTTP, live stream, channel, queue (examples/orders_caller.py)",
        )
        caller = _spawn([sys.executable, str(root / "examples/orders_caller.py")], env, "caller", root)
        code = caller.wait(90)
        if code != 0:
            raise RuntimeError(f"the caller failed with exit code {code}")

        _step(4, total, "telemetry stored by the engine (engine::logs::list, engine::traces::tree)")
        if env["OTEL_ENABLED"].lower() in ("0", "false", "no", "off"):
            print("  (skipped: OTEL_ENABLED is off)")
        else:
            _print_telemetry(engine.url)

        _step(5, total, "the engine's catalog (engine::functions::list, workers, trigger bindings)")
        _print_catalog(engine.url)

        _step(6, total, "the dashboard (iii-tui)")
        _show_dashboard(engine.url)
        print("\ndemo finished: every step succeeded", flush=True)
        return 0
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr, flush=True)
        if engine.is_running():
            print(f"engine log tail:\n{engine.stderr_tail(30)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    finally:
        _stop(caller)
        _stop(worker)
        engine.stop()
