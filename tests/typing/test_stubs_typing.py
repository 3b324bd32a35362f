"""The typing surface of generated stubs, both ways (style.md principle 10).

``catalog.json`` is generated into ``typing_client.py`` next to copies of ``usage_ok.py`` (must be
clean under ``mypy --strict``) and ``usage_bad.py`` (each misuse marked ``# E: <code>`` must be
reported on its line with that code, and nothing else). Three configurations: the project's (with
the pydantic mypy plugin), the plugin with ``init_typed = true``, and no plugin.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from iii_codegen.catalog import load_snapshot
from iii_codegen.config import OutputSpec
from iii_codegen.stubgen import render
from support.stubgen import run_mypy

HERE = Path(__file__).parent
_MARK = re.compile(r"# E(\[typed-init\])?: ([a-z-]+)\s*$")
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")

CONFIGS = {
    "project": None,
    "plugin-init-typed": (
        "[mypy]\nstrict = True\npython_version = 3.11\nplugins = pydantic.mypy\n"
        "[pydantic-mypy]\ninit_typed = True\n"
    ),
    "no-plugin": "[mypy]\nstrict = True\npython_version = 3.11\n",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("typing")
    spec = OutputSpec(functions=("*",), triggers=("*",))
    (out / "typing_client.py").write_text(render(load_snapshot(HERE / "catalog.json"), spec).source)
    for name in ("usage_ok.py", "usage_bad.py"):
        shutil.copy(HERE / name, out / name)
    return out


def _expected(path: Path, typed_init: bool) -> set[tuple[int, str]]:
    out = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _MARK.search(line)
        if match and (typed_init or not match.group(1)):
            out.add((number, match.group(2)))
    return out


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_usage_type_checks(config: str, workdir: Path) -> None:
    extra: list[str] = []
    if CONFIGS[config] is not None:
        ini = workdir / f"{config}.ini"
        ini.write_text(CONFIGS[config] or "")
        extra = ["--config-file", str(ini)]
    files = [workdir / "typing_client.py", workdir / "usage_ok.py", workdir / "usage_bad.py"]
    result = run_mypy(files, *extra, cache_dir=workdir / f"cache-{config}")
    errors: dict[str, set[tuple[int, str]]] = {}
    for line in result.stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            errors.setdefault(Path(match["file"]).name, set()).add((int(match["line"]), match["code"]))
    assert "typing_client.py" not in errors, result.stdout
    assert "usage_ok.py" not in errors, result.stdout
    expected = _expected(workdir / "usage_bad.py", typed_init=config != "project")
    assert errors.get("usage_bad.py", set()) == expected, result.stdout
