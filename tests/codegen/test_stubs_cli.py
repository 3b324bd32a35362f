"""``iii-typed codegen generate`` / ``catalog-schema`` from snapshots: outputs, --check, configs, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from iii_codegen.catalog import Catalog, FunctionEntry, dump_snapshot
from iii_codegen.cli import main
from iii_codegen.stubgen import GENERATOR_VERSION

OBJ: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}


def _snapshot(path: Path, functions: dict[str, Any]) -> Path:
    entries = [
        FunctionEntry(function_id=k, request_schema=v, response_schema=v) for k, v in functions.items()
    ]
    path.write_text(dump_snapshot(Catalog(functions=entries)), encoding="utf-8")
    return path


Capsys = pytest.CaptureFixture[str]


def _run(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_generate_writes_then_leaves_unchanged_file_alone(tmp_path: Path, capsys: Capsys) -> None:
    snap = _snapshot(tmp_path / "cat.json", {"orders::create": OBJ})
    out = tmp_path / "client.py"
    assert _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out))[:2] == (0, f"wrote {out}\n")
    os.utime(out, (1_000_000, 1_000_000))
    assert _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out))[:2] == (0, f"unchanged {out}\n")
    assert out.stat().st_mtime == 1_000_000
    assert _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out), "--check")[:2] == (
        0,
        f"up to date {out}\n",
    )


def test_check_names_what_appeared_disappeared_and_changed(tmp_path: Path, capsys: Capsys) -> None:
    snap = _snapshot(tmp_path / "cat.json", {"a::keep": OBJ, "a::edit": OBJ, "a::drop": OBJ})
    out = tmp_path / "client.py"
    assert main(["generate", "--snapshot", str(snap), "-o", str(out)]) == 0
    before = out.read_text()
    edited = {**OBJ, "properties": {"x": {"type": "integer"}}}
    _snapshot(snap, {"a::keep": OBJ, "a::edit": edited, "a::new": OBJ})
    code, stdout, _ = _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out), "--check")
    assert code == 1
    assert f"would change {out}" in stdout
    assert "  appeared: function a::new" in stdout
    assert "  disappeared: function a::drop" in stdout
    assert "  changed: function a::edit" in stdout
    assert out.read_text() == before  # --check writes nothing


def test_check_reports_a_hand_edit_and_a_missing_file(tmp_path: Path, capsys: Capsys) -> None:
    snap = _snapshot(tmp_path / "cat.json", {"a::b": OBJ})
    out = tmp_path / "client.py"
    code, stdout, _ = _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out), "--check")
    assert (code, stdout.splitlines()[0]) == (1, f"would create {out}")
    assert not out.exists()
    main(["generate", "--snapshot", str(snap), "-o", str(out)])
    out.write_text(out.read_text().replace("class _ANamespace", "class _Edited"))
    code, stdout, _ = _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out), "--check")
    assert code == 1
    assert "the catalog entries are the same" in stdout
    assert "-class _Edited" in stdout and "+class _ANamespace" in stdout


def test_check_names_a_different_selection_as_the_reason(tmp_path: Path, capsys: Capsys) -> None:
    """A module generated from a snapshot without globs differs from the same entries selected by
    globs only in its ``# Selection:`` line: --check says so instead of blaming a hand edit."""
    snap = _snapshot(tmp_path / "cat.json", {"mine::a": OBJ, "chan::b": OBJ})
    out = tmp_path / "m.py"
    assert _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out))[0] == 0
    argv = ["generate", "--snapshot", str(snap), "--functions", "mine::*", "--functions", "chan::*"]
    code, stdout, _ = _run(capsys, *argv, "-o", str(out), "--check")
    assert code == 1
    assert stdout.splitlines()[:2] == [
        f"would change {out}",
        "  generated with a different selection (file: functions *; triggers *;"
        " now: functions mine::* chan::*)",
    ]
    assert "edited by hand" not in stdout and "@@" not in stdout
    # A hand edit on top of it is still shown.
    out.write_text(out.read_text().replace("class _MineNamespace", "class _Edited"))
    code, stdout, _ = _run(capsys, *argv, "-o", str(out), "--check")
    assert code == 1
    assert "  generated with a different selection" in stdout
    assert "more than the banner differs" in stdout and "-class _Edited" in stdout


def test_check_names_a_different_generator_version(tmp_path: Path, capsys: Capsys) -> None:
    snap = _snapshot(tmp_path / "cat.json", {"a::b": OBJ})
    out = tmp_path / "client.py"
    assert _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out))[0] == 0
    text = out.read_text()
    old = text.replace(
        f"# Generators: iii-typed codegen {GENERATOR_VERSION},", "# Generators: iii-typed codegen 0,"
    )
    assert old != text
    out.write_text(old)
    code, stdout, _ = _run(capsys, "generate", "--snapshot", str(snap), "-o", str(out), "--check")
    assert code == 1
    assert stdout.splitlines()[1].startswith(
        "  generated by a different generator version (file: iii-typed codegen 0, datamodel-code-generator"
    )
    assert f"; now: iii-typed codegen {GENERATOR_VERSION}, " in stdout


def test_config_file_with_several_outputs(tmp_path: Path, capsys: Capsys) -> None:
    snap = _snapshot(tmp_path / "cat.json", {"orders::create": OBJ, "users::get": OBJ})
    (tmp_path / "gen").mkdir()
    config = tmp_path / "gen" / "codegen.toml"
    config.write_text(
        '["clients/orders.py"]\nfunctions = ["orders::*"]\nclients = ["async"]\n\n'
        '["clients/users.py"]\nfunctions = ["users::*", "nothing::*"]\n'
    )
    code, stdout, stderr = _run(capsys, "generate", "--snapshot", str(snap), "--config", str(config))
    assert code == 0
    orders = tmp_path / "gen" / "clients" / "orders.py"
    users = tmp_path / "gen" / "clients" / "users.py"
    assert stdout.splitlines() == [f"wrote {orders}", f"wrote {users}"]
    assert "class AsyncClient" in orders.read_text() and "class Client(" not in orders.read_text()
    assert "users::get" in users.read_text() and "orders::create" not in users.read_text()
    assert "functions glob 'nothing::*' matches nothing" in stderr
    # -o ignores the config file entirely.
    alone = tmp_path / "alone.py"
    assert main(["generate", "--snapshot", str(snap), "--config", str(config), "-o", str(alone)]) == 0
    assert "orders::create" in alone.read_text() and "users::get" in alone.read_text()


def test_pyproject_table_is_found_in_the_current_folder(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = _snapshot(tmp_path / "cat.json", {"orders::create": OBJ})
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.iii-typed.codegen."stubs.py"]\nfunctions = ["*"]\n'
    )
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "generate", "--snapshot", str(snap))[:2] == (0, "wrote stubs.py\n")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('["a.py"]\nfunctions = ["*"]\nlanguage = "python"\n', "unknown key(s) language"),
        ('["a.py"]\nclients = ["sync"]\n', "empty selection"),
        ('["a.py"]\nfunctions = "orders::*"\n', "'a.py'.functions: expected a list"),
        ('["a.py"]\nfunctions = ["*"]\nclients = ["threads"]\n', "clients: expected a non-empty subset"),
        ("not toml [", "not valid TOML"),
        ("", "no outputs configured"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: Capsys, toml: str, message: str) -> None:
    snap = _snapshot(tmp_path / "cat.json", {"a::b": OBJ})
    config = tmp_path / "codegen.toml"
    config.write_text(toml)
    code, _, stderr = _run(capsys, "generate", "--snapshot", str(snap), "--config", str(config))
    assert code == 2
    assert message in stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "-o", "x.py"], "one of the arguments --url --snapshot is required"),
        (["generate", "--snapshot", "a.json", "--url", "ws://x", "-o", "x.py"], "not allowed with argument"),
        (["generate", "--snapshot", "missing.json", "-o", "x.py"], "cannot read snapshot"),
        (["generate", "--snapshot", "cat.json", "--functions", "a::*"], "need -o"),
        (["generate", "--snapshot", "cat.json"], "give -o FILE.py, or a config"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    _snapshot(tmp_path / "cat.json", {"a::b": OBJ})
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _run(capsys, *argv)
    assert code == 2
    assert message in stderr


def test_catalog_schema_check_is_up_to_date(capsys: Capsys) -> None:
    code, stdout, _ = _run(capsys, "catalog-schema", "--check")
    assert code == 0 and stdout.startswith("up to date")


def test_invalid_snapshot_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    snap = tmp_path / "cat.json"
    snap.write_text(
        json.dumps({"format": "iii-typed.catalog", "version": 1, "functions": [{"namespace": "x"}]})
    )
    code, _, stderr = _run(capsys, "generate", "--snapshot", str(snap), "-o", str(tmp_path / "o.py"))
    assert code == 2 and "functions.0.function_id" in stderr


def test_unreadable_snapshots_and_unwritable_outputs_exit_2_with_a_message(
    tmp_path: Path, capsys: Capsys
) -> None:
    """Bad files and paths are usage errors: one line on stderr and exit 2, never a traceback."""
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xba\xff\x00garbage")
    code, _, stderr = _run(capsys, "generate", "--snapshot", str(binary), "-o", str(tmp_path / "o.py"))
    assert code == 2 and "binary.json" in stderr and "UTF-8" in stderr
    snap = _snapshot(tmp_path / "cat.json", {"a::b": OBJ})
    blocked = tmp_path / "file"
    blocked.write_text("")
    for target, what in [(tmp_path, "o.py is a folder"), (blocked / "o.py", "parent is a file")]:
        code, stdout, stderr = _run(capsys, "generate", "--snapshot", str(snap), "-o", str(target))
        assert code == 2, what
        assert f"cannot write {target}" in stderr and "Traceback" not in stderr, what
        assert stdout == ""
    not_text = tmp_path / "old.py"
    not_text.write_bytes(b"\xff\xfe binary")  # an existing -o file that is not text is replaced
    assert _run(capsys, "generate", "--snapshot", str(snap), "-o", str(not_text))[0] == 0
    assert not_text.read_text(encoding="utf-8").startswith("# Code generated")


def test_a_malformed_url_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    """A malformed ``--url`` is a usage error (it raised ValueError with a traceback)."""
    for argv in (
        ["generate", "--url", "garbage", "-o", str(tmp_path / "o.py")],
        ["snapshot", "--url", "http://x", "-o", str(tmp_path / "s.json")],
    ):
        code, _, stderr = _run(capsys, *argv)
        assert code == 2, argv
        assert "is not a ws:// or wss:// URL" in stderr
