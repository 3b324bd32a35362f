"""Benchmark: typed-stub generation time for a synthetic catalog (goal: 500 functions in < 5 s).

    .venv/bin/python bench/codegen_bench.py [--functions 500] [--repeat 3] [--write]

Each synthetic function has a request and a response object of 3 to 8 fields mixing strings,
bounded integers, string enums, ``date-time``/``uuid`` strings, nullable type arrays, maps, string
arrays, nested inline objects (up to 3 levels) and a ``$ref`` to a per-function ``$defs/Money``
(shared by every function, so it is one class). The timed step is :func:`iii_codegen.stubgen.render`
(selection, preparation, naming, datamodel-code-generator, merge, emission) after one warm-up call;
``jobs=1`` is the in-process path, ``jobs=2`` two worker processes (the default for 256+ units uses
one per core the load average leaves free).
Wall time depends on what else runs on the machine, so the load average is recorded too.
With ``--write`` the results replace the "Code generation" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from iii_codegen.catalog import Catalog, FunctionEntry
from iii_codegen.config import OutputSpec
from iii_codegen.stubgen import render

__all__ = ["main", "synthetic_catalog"]

RESULTS = Path(__file__).with_name("RESULTS.md")
_BEGIN = "<!-- codegen-bench:begin -->"
_END = "<!-- codegen-bench:end -->"
_MONEY = {
    "type": "object",
    "title": "Money",
    "properties": {"amount": {"type": "integer"}, "currency": {"type": "string"}},
    "required": ["amount"],
}


def _side(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for i in range(rng.randint(3, 8)):
        kind = rng.choice(["str", "int", "enum", "dt", "null", "map", "arr", "obj", "money", "uuid"])
        if kind == "obj" and depth >= 2:
            kind = "str"
        name = f"f{i}_{kind}"
        props[name] = {
            "str": {"type": "string", "description": "A string."},
            "int": {"type": "integer", "minimum": 0},
            "enum": {"type": "string", "enum": ["a", "b", "c-d"]},
            "dt": {"type": "string", "format": "date-time"},
            "uuid": {"type": "string", "format": "uuid"},
            "null": {"type": ["string", "null"]},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
            "arr": {"type": "array", "items": {"type": "string"}},
            "money": {"$ref": "#/$defs/Money"},
        }.get(kind) or _side(rng, depth + 1)
    return {"type": "object", "properties": props, "required": sorted(props)[:2]}


def synthetic_catalog(functions: int, seed: int = 1) -> Catalog:
    """A catalog of ``functions`` functions over 20 namespaces (deterministic for a seed)."""
    rng = random.Random(seed)
    entries = []
    for i in range(functions):
        entries.append(
            FunctionEntry(
                function_id=f"svc{i % 20}::op_{i}",
                request_schema={**_side(rng), "$defs": {"Money": _MONEY}},
                response_schema={**_side(rng), "$defs": {"Money": _MONEY}},
            )
        )
    return Catalog(functions=entries)


def _time(catalog: Catalog, jobs: int | None, repeat: int) -> tuple[float, float, int]:
    """Median wall time, median CPU time of this process, and the output's line count."""
    spec = OutputSpec(functions=("*",))
    walls, cpus = [], []
    lines = 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        source = render(catalog, spec, jobs=jobs).source
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        lines = source.count("\n")
    return statistics.median(walls), statistics.median(cpus), lines


def _generator_cpu(catalog: Catalog) -> float:
    """CPU seconds of the datamodel-code-generator calls alone, for the same catalog."""
    from iii_codegen import stubgen
    from iii_codegen._dcg import generate_many

    units = [stubgen._function_unit(fn) for fn in catalog.functions]
    stubgen._assign_names(units)
    documents = [chunk.document for chunk in stubgen._chunks(units, stubgen.CHUNK_UNITS)]
    start = time.process_time()
    generate_many(documents)
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and optionally write it to ``bench/RESULTS.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)

    render(synthetic_catalog(2, seed=99), OutputSpec(functions=("*",)))  # warm-up: lazy imports
    catalog = synthetic_catalog(args.functions)
    rows = []
    modes: list[tuple[str, int | None]] = [("in-process (`jobs=1`)", 1)]
    if (os.cpu_count() or 1) >= 2:
        modes.append(("2 worker processes (`jobs=2`)", 2))
    for label, jobs in modes:
        wall, cpu, lines = _time(catalog, jobs, args.repeat)
        rows.append((label, wall, cpu, lines))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    generator_cpu = _generator_cpu(catalog)
    goal = 5.0
    table = [
        f"Command: `.venv/bin/python bench/codegen_bench.py --functions {args.functions}"
        f" --repeat {args.repeat} --write`",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()};"
        f" 1-minute load average at the end: {load:.2f}.",
        f"Catalog: {args.functions} functions (request + response objects, nested objects, enums,"
        " formats, maps, a shared `$defs/Money`).",
        "",
        "| mode | wall (median) | per function | CPU of this process | generated lines | goal < 5 s |",
        "|---|---|---|---|---|---|",
    ]
    for label, wall, cpu, lines in rows:
        per = wall / args.functions * 1000
        verdict = "yes" if wall < goal else "no"
        table.append(f"| {label} | {wall:.2f} s | {per:.1f} ms | {cpu:.2f} s | {lines} | {verdict} |")
    table += [
        "",
        f"Of the in-process CPU time, datamodel-code-generator itself takes {generator_cpu:.2f} s"
        f" ({generator_cpu / args.functions * 1000:.1f} ms per function, request and response); the rest"
        " (selection, schema preparation, naming, merge, ordering, emission) is iii-typed's own work."
        " The default uses worker processes only for 256+ units and only on cores the load average"
        " leaves free (the output is the same either way).",
    ]
    text = "\n".join(table)
    print(text)
    if args.write:
        section = f"## Code generation (typed client stubs)\n\n{_BEGIN}\n{text}\n{_END}\n"
        old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
        pattern = re.compile(
            r"## Code generation \(typed client stubs\)\n\n"
            + re.escape(_BEGIN)
            + ".*?"
            + re.escape(_END)
            + "\n",
            re.S,
        )
        new = (
            pattern.sub(lambda _: section, old)
            if pattern.search(old)
            else old.rstrip("\n") + "\n\n" + section
        )
        RESULTS.write_text(new, encoding="utf-8")
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
